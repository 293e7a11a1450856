"""Using a trained world model (RLVR-World Sec. 5): task success read from predicted frames,
model-predictive control, and policy evaluation inside the world model.

``planner`` (random shooting / CEM, receding horizon, modality-agnostic), ``pusht_coverage``
(goal coverage from frames), ``pusht_policies`` (policies and episodes in gym-pusht),
``pusht_world`` (a quickstart checkpoint as a frame simulator), ``pusht_mpc`` (MPC on imagined
frames), ``policy_eval`` (Real2Sim ranking), ``toy_text`` (MPC in the toy text world).
"""
