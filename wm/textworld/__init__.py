"""Text worlds: how a next state is written as a model's answer and read back.

Each text world has one home for its answer format (marker, target writer, parser): the data
(SFT targets), the prompts (format instructions) and the rewards (parsing) all import it.

- ``lenient_json``: find and repair a JSON object in free model output (shared by the JSON worlds).
- ``game_state``: the ByteSized32 state model (objects by uuid, merge, item comparison).
- ``game_answer``: the ByteSized32 answer format (``The final answer is: {...}``).
- ``web_answer``: the WMA answer format ("New items: / Deleted items: / Updated items:").
- ``toy``: the toy lamp-and-counter world (dynamics and answer format).
"""
