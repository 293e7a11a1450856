"""bf16 on every stage (issue #27, E): ``trainer.precision=bf16-mixed`` runs the tokenizer, MLE
and GRPO steps (sampling included) with bf16 matmuls/convolutions, float32 logits, rewards and
losses, and GRPO stays on-policy (``grpo/logp_diff`` ~ 0, KL 0 at the first step). Activation
checkpointing leaves the gradients unchanged. CPU bf16 runs on AVX512-BF16 machines (and
elsewhere, slowly, by emulation)."""
import json
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from stage_fixtures import (cpu_overrides, fit, read_rows, recorder_override, save_tiny_tokenizer,
                            tiny_llama, tiny_video_overrides, write_video_dataset)
from wm.utils.precision import autocast, autocast_dtype, fp32_logits


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny_video_bf16")
    return write_video_dataset(base / "squares"), save_tiny_tokenizer(base / "tok" / "last.ckpt")


class DtypeProbe(L.Callback):
    """Forward hooks on every Linear/Conv2d of the LightningModule: appends
    ``{"module", "kind", "grad", "dtype"}`` (one row per distinct combination) to ``path``."""

    def __init__(self, path: str):
        self.path, self.seen, self.handles = str(path), set(), []

    def on_fit_start(self, trainer, pl_module):
        for name, mod in pl_module.named_modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                self.handles.append(mod.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(mod, args, out):
            if torch.is_tensor(out):
                self.seen.add((name, type(mod).__name__, torch.is_grad_enabled(), str(out.dtype)))
        return hook

    def on_fit_end(self, trainer, pl_module):
        for h in self.handles:
            h.remove()
        rows = [dict(zip(("module", "kind", "grad", "dtype"), s)) for s in sorted(self.seen)]
        Path(self.path).write_text(json.dumps(rows))


def _probe(path: Path) -> list[str]:
    return ["+callbacks.probe._target_=test_bf16.DtypeProbe", f"+callbacks.probe.path={path}"]


def _dtypes(rows, module_part: str, grad: bool | None = None) -> set[str]:
    return {r["dtype"] for r in rows if module_part in r["module"]
            and (grad is None or r["grad"] == grad)}


# ------------------------------------------------------------------------------ helpers
def test_autocast_dtype_names_the_option():
    assert autocast_dtype("bf16-mixed") is torch.bfloat16
    assert autocast_dtype("32-true") is None and autocast_dtype(None) is None
    with pytest.raises(ValueError, match="precision='bf17'.*bf16-mixed"):
        autocast_dtype("bf17")


def test_fp32_logits_under_autocast_and_unchanged_state():
    """Inside bf16 autocast the body runs in bf16 and the head returns float32 logits equal to
    the head computed in float32 from the same hidden states; weights and names unchanged."""
    import copy

    model = tiny_llama(vocab_size=40)
    keys = list(model.state_dict())
    ids = torch.randint(40, (2, 7))
    with autocast("bf16-mixed", "cpu"):
        plain = model(input_ids=ids).logits
    assert plain.dtype == torch.bfloat16                 # today's head: bf16 logits
    fp32_logits(fp32_logits(model))                      # idempotent
    assert list(model.state_dict()) == keys
    with autocast("bf16-mixed", "cpu"):
        out = model(input_ids=ids, output_hidden_states=True)
    assert out.logits.dtype == torch.float32
    hidden = out.hidden_states[-1]
    expect = hidden.float() @ model.lm_head.weight.T
    torch.testing.assert_close(out.logits, expect, rtol=1e-5, atol=1e-5)
    clone = copy.deepcopy(model)                         # GRPO's frozen reference
    with autocast("bf16-mixed", "cpu"):
        assert clone(input_ids=ids).logits.dtype == torch.float32
    assert clone.lm_head.forward.__self__ is clone.lm_head


# ------------------------------------------------------------------------------ stages
def test_grpo_step_bf16_on_policy(tiny_video, tmp_path):
    """Two rollout batches of video GRPO under bf16-mixed: the policy's matmuls ran in bf16 in
    sampling and in the update, its logits and the frame decoder in float32; logp_diff small,
    KL exactly 0 on the first batch (the reference is the same weights)."""
    root, tok = tiny_video
    runs = tmp_path / "runs"
    fit(["stage=grpo", *tiny_video_overrides(root, tok), "stage.module.init_policy=null",
         "stage.module.group_size=4", "stage.module.micro_batch_size=8",
         "stage.module.log_images_every_n_steps=0", "stage.val_check_interval=1000",
         "stage.limit_val_batches=0", "model.lr.grpo=1e-3", "stage.max_steps=2",
         "trainer.precision=bf16-mixed"]
        + cpu_overrides(runs, tmp_path / "data") + recorder_override(tmp_path / "rows.jsonl")
        + _probe(tmp_path / "dtypes.json"))
    rows = read_rows(tmp_path / "rows.jsonl")
    first = rows[0]["metrics"]
    print("bf16 GRPO logp_diff mean/max per step:",
          [(r["metrics"]["grpo/logp_diff/mean"], r["metrics"]["grpo/logp_diff/max"]) for r in rows])
    assert first["grpo/kl"] == 0.0
    assert all(r["metrics"]["grpo/logp_diff/mean"] < 1e-3 for r in rows)
    seen = json.loads((tmp_path / "dtypes.json").read_text())
    assert _dtypes(seen, "policy.model.layers.0.self_attn.q_proj", grad=False) == {"torch.bfloat16"}
    assert _dtypes(seen, "policy.model.layers.0.self_attn.q_proj", grad=True) == {"torch.bfloat16"}
    assert _dtypes(seen, "policy.lm_head") == {"torch.float32"}
    decoder = {r["dtype"] for r in seen if "decoder" in r["module"] and r["kind"] == "Conv2d"}
    assert decoder == {"torch.float32"}                  # rewards from float32 frames


def test_mle_step_bf16(tiny_video, tmp_path):
    root, tok = tiny_video
    fit(["stage=mle", *tiny_video_overrides(root, tok), "stage.val_check_interval=1000",
         "stage.limit_val_batches=0", "stage.max_steps=1", "trainer.precision=bf16-mixed"]
        + cpu_overrides(tmp_path / "runs", tmp_path / "data")
        + recorder_override(tmp_path / "rows.jsonl") + _probe(tmp_path / "dtypes.json"))
    loss = read_rows(tmp_path / "rows.jsonl")[0]["metrics"]["train/loss"]
    assert loss == loss and 0 < loss < 20
    seen = json.loads((tmp_path / "dtypes.json").read_text())
    assert _dtypes(seen, "policy.model.layers.0.mlp.up_proj", grad=True) == {"torch.bfloat16"}
    assert _dtypes(seen, "policy.lm_head", grad=True) == {"torch.float32"}


def test_tokenizer_step_bf16(tmp_path):
    from torch.utils.data import DataLoader

    from wm.stages.tokenizer import TokenizerModule
    from wm.vision.discriminator import PatchDiscriminator
    from wm.vision.fsq_vqgan import FrameTokenizer

    torch.manual_seed(0)
    frames = torch.rand(4, 2, 3, 32, 32)
    module = TokenizerModule(
        tokenizer=FrameTokenizer(channels=(8, 16, 16), latent_dim=8, resolution=(32, 32)),
        discriminator=PatchDiscriminator(base_channels=8, n_layers=2),
        optimizer=partial(torch.optim.Adam, lr=1e-3),
        disc_optimizer=partial(torch.optim.Adam, lr=1e-3),
        gan_start_step=0, gp_weight=1.0, log_images_every_n_steps=0)
    probe = DtypeProbe(tmp_path / "dtypes.json")
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, precision="bf16-mixed", callbacks=[probe])
    trainer.fit(module, DataLoader([{"frames": f} for f in frames], batch_size=2))
    m = trainer.callback_metrics
    assert all(torch.isfinite(m[k]) for k in ("train/loss", "train/d_loss"))
    seen = json.loads((tmp_path / "dtypes.json").read_text())
    assert _dtypes(seen, "tokenizer.encoder", grad=True) == {"torch.bfloat16"}
    assert _dtypes(seen, "discriminator", grad=True) == {"torch.bfloat16"}
    assert all(p.dtype == torch.float32 for p in module.parameters())   # float32 master weights


def test_sample_and_score_outside_lightning_bf16(tiny_video):
    """eval.py's path (no Lightning step): ``autocast`` around ``sample_and_score`` samples in
    bf16; rewards and metrics are float32 and equal to a float32 scoring of the same tokens."""
    from stage_fixtures import compose_train
    from hydra.utils import instantiate
    from wm.rollout.scoring import sample_and_score, score_rows
    from wm.utils.seeding import seeded_generator

    root, tok = tiny_video
    cfg = compose_train(["stage=mle", *tiny_video_overrides(root, tok)])
    dm = instantiate(cfg.data.datamodule, _convert_="all")
    dm.prepare_data()
    dm.setup("fit")
    task = instantiate(cfg.data.task, _convert_="all")
    task.connect(dm)
    policy = fp32_logits(task.build_policy(instantiate(cfg.model.policy)))
    batch = next(iter(dm.val_dataloader()))
    seen = set()
    h = policy.model.layers[0].self_attn.q_proj.register_forward_hook(
        lambda m, a, o: seen.add(o.dtype))
    with autocast("bf16-mixed", "cpu"):
        _, rewards, metrics, rollout = sample_and_score(task, policy, batch, 2,
                                                        seeded_generator(0, 0, 0, "cpu"))
    h.remove()
    assert seen == {torch.bfloat16}
    assert rewards["reward"].dtype == torch.float32
    _, again, _ = score_rows(task, rollout.tokens, batch, 2)        # float32, no autocast
    torch.testing.assert_close(rewards["reward"], again["reward"], rtol=0, atol=0)


# ----------------------------------------------------------------- activation checkpointing
def _grads(model, ids, enabled: bool) -> dict[str, torch.Tensor]:
    from wm.language.model import set_gradient_checkpointing

    set_gradient_checkpointing(model, enabled)
    model.train()
    model.zero_grad()
    out = model(input_ids=ids, use_cache=False).logits.float()
    loss = out.log_softmax(-1)[..., 1:, :].gather(-1, ids[:, 1:, None]).mean()
    loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["llama", "qwen2_lora"])
def test_gradient_checkpointing_gives_equal_gradients(kind):
    from wm.language.model import apply_lora

    if kind == "llama":
        model = tiny_llama(vocab_size=64)
    else:
        from transformers import Qwen2Config, Qwen2ForCausalLM

        torch.manual_seed(0)
        model = apply_lora(Qwen2ForCausalLM(Qwen2Config(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2)), {"r": 4, "alpha": 8, "dropout": 0.0})
    ids = torch.randint(64, (2, 12), generator=torch.Generator().manual_seed(1))
    plain = _grads(model, ids, False)
    ckpt = _grads(model, ids, True)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    assert base.is_gradient_checkpointing
    assert plain and plain.keys() == ckpt.keys()
    if kind == "qwen2_lora":                             # only the adapters train
        assert all("lora_" in k for k in plain)
    for k in plain:
        torch.testing.assert_close(ckpt[k], plain[k], rtol=0, atol=1e-6, msg=k)


def test_gradient_checkpointing_switch_from_config(tiny_video):
    """``model.gradient_checkpointing`` reaches the policy, also one loaded from a checkpoint
    (the stage re-applies the factory's setting); GRPO keeps it off under shared_prefix."""
    from stage_fixtures import compose_train
    from hydra.utils import instantiate
    from wm.language.model import gradient_checkpointing_setting

    root, tok = tiny_video
    for model, on in (("world_tiny", False), ("world_paper", True)):
        cfg = compose_train(["stage=mle", f"model={model}"])
        assert gradient_checkpointing_setting(instantiate(cfg.model.policy)) is on
    factory = instantiate(compose_train(["stage=mle", *tiny_video_overrides(root, tok),
                                         "model.gradient_checkpointing=true"]).model.policy)
    assert factory(vocab_size=50).is_gradient_checkpointing


# ------------------------------------------------------------------- eval.py / the pipeline
def test_eval_precision_bf16_samples_under_autocast(tiny_video, tmp_path, monkeypatch):
    """``eval.py precision=bf16-mixed`` (default: the selected trainer's precision) samples under
    bf16 autocast and is a different evaluation from the float32 one (its own folder/key);
    the float32 evaluation's key has no precision entry (earlier evaluations keep their key)."""
    from hydra import compose, initialize_config_dir
    from stage_fixtures import CONF, RES, TINY_SCORING, compose_train
    import wm.evaluation.prediction as prediction
    from wm.cli.evaluate import evaluate
    from wm.cli.fit import fit_stage, last_checkpoint

    root, tok = tiny_video
    cfg = compose_train(["stage=mle", *tiny_video_overrides(root, tok),
                         *cpu_overrides(tmp_path / "runs", tmp_path / "d"), "stage.max_steps=1",
                         "stage.val_check_interval=1000", "stage.limit_val_batches=0"])
    fit_stage(cfg)
    ckpt = last_checkpoint(Path(cfg.run_dir))
    real, seen = prediction.evaluate_policy, []

    def spy(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
        return real(*args, **kwargs)

    monkeypatch.setattr(prediction, "evaluate_policy", spy)
    keys = {}
    for extra in ([], ["precision=bf16-mixed"], ["trainer=gpu", "trainer.accelerator=cpu"]):
        over = [f"ckpt={ckpt}", "data=pusht", *TINY_SCORING, f"data.root={root}",
                f"data.resolution=[{RES},{RES}]", "data.source=null",
                "data.datamodule.batch_size=2", "data.datamodule.val_every=4",
                "data.datamodule.val_clips_per_episode=1", "num_threads=1", "max_batches=1",
                "num_strips=1", f"paths.runs_dir={tmp_path / 'runs'}", *extra]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            ecfg = compose(config_name="eval", overrides=over)
        summary = evaluate(ecfg)
        assert summary["num_predictions"] > 0
        out = sorted((Path(cfg.run_dir) / "eval").glob("*/metrics.json"),
                     key=lambda p: p.stat().st_mtime)[-1]
        keys[" ".join(extra)] = json.loads(out.read_text())["evaluation"]["settings"]
    assert seen == [False, torch.bfloat16, torch.bfloat16]
    assert "precision" not in keys[""]
    assert keys["precision=bf16-mixed"]["precision"] == "bf16-mixed"


def test_every_model_preset_offers_gradient_checkpointing():
    """``model.gradient_checkpointing=true`` is settable without ``+`` on every model preset,
    the offline language rig included, and reaches the built model."""
    from stage_fixtures import CONF, compose_train
    from hydra.utils import instantiate

    presets = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
    assert "lm_tiny" in presets
    for name in presets:
        cfg = compose_train(["stage=mle", f"model={name}", "model.gradient_checkpointing=true"])
        assert cfg.model.policy.gradient_checkpointing is True, name
    model, _ = instantiate(compose_train(["stage=mle", "data=toy_text", "model=lm_tiny",
                                          "model.gradient_checkpointing=true"]).model.policy)()
    assert model.is_gradient_checkpointing


def test_gradient_checkpointing_is_not_part_of_the_run_identity():
    """Switching checkpointing changes memory, not the maths: the same run resumes, and runs
    made before the switch existed keep their identity (no ``gradient_checkpointing`` in it)."""
    from stage_fixtures import compose_train
    from wm.cli.run_identity import fingerprint, run_identity

    ids = [run_identity(compose_train(["stage=mle", f"model.gradient_checkpointing={on}"]))
           for on in ("false", "true")]
    assert "gradient_checkpointing" not in json.dumps(ids[0])
    assert fingerprint(ids[0]) == fingerprint(ids[1])


def test_grpo_gradient_checkpointing_with_the_shared_prefix():
    """GRPO checkpoints activations under the shared prefix too (the response pass reads the
    prompts' cached keys/values, which the replay reads again): the policy's layers are
    checkpointed, the shared-prefix loss's gradients equal the uncheckpointed ones, and a bf16
    step runs on-policy with KL 0."""
    from stage_fixtures import TargetTokenData, TargetTokenTask
    from wm.language.model import set_gradient_checkpointing
    from wm.rl.loss import GRPOLossConfig
    from wm.rollout.forward import grouped_response_logits
    from wm.stages.grpo import GRPOModule
    from wm.world.llama import build_llama

    factory = partial(build_llama, hidden_size=32, num_layers=2, num_heads=2,
                      intermediate_size=64, max_position_embeddings=64, seed=0,
                      gradient_checkpointing=True)
    opt = partial(torch.optim.AdamW, lr=1e-3)
    module = GRPOModule(TargetTokenTask(), factory, opt, GRPOLossConfig(), init_policy=None,
                        group_size=4, micro_batch_size=16, shared_prefix=True)
    policy = module.policy
    assert policy.is_gradient_checkpointing

    g = torch.Generator().manual_seed(0)
    B, G, P, T = 2, 4, 7, 5
    vocab = policy.config.vocab_size
    prompts = torch.randint(vocab, (B, P), generator=g)
    mask = torch.ones(B, P, dtype=torch.bool)
    responses = torch.randint(vocab, (B * G, T), generator=g)
    weights = torch.randn(B * G, T, vocab, generator=g)

    def grads(on: bool) -> dict:
        set_gradient_checkpointing(policy, on)
        policy.train().zero_grad()
        calls, mlp = [], policy.model.layers[0].mlp
        forward = mlp.forward                  # counts replays too (hooks do not see them)
        mlp.forward = lambda x: (calls.append(1), forward(x))[1]
        logits = grouped_response_logits(policy, prompts, mask, responses, G)
        (logits.float() * weights).sum().backward()
        del mlp.forward
        return {n: p.grad.clone() for n, p in policy.named_parameters()}, len(calls)

    plain, n_plain = grads(False)
    ckpt, n_ckpt = grads(True)
    assert n_ckpt > n_plain          # the response pass was replayed in the backward pass
    for k in plain:
        torch.testing.assert_close(ckpt[k], plain[k], rtol=0, atol=1e-6, msg=k)

    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, precision="bf16-mixed")
    trainer.fit(module, datamodule=TargetTokenData(batch_size=4))
    m = trainer.callback_metrics
    assert float(m["grpo/kl"]) == 0.0 and float(m["grpo/logp_diff/mean"]) < 1e-3
    assert float(m["grpo/grad_norm"]) > 0


def test_cascade_attention_under_bf16_is_as_accurate_as_sdpa():
    """The sampler's cascade attention (prompt keys read once per group) under bf16 autocast:
    its softmax pieces are float32, as in SDPA's kernels, so its error against float32
    attention of the same bf16 inputs is no larger than SDPA's own on those inputs."""
    from types import SimpleNamespace

    import torch.nn.functional as F
    from wm.rollout.cascade import CascadeLayer, cascade_attention

    g = torch.Generator().manual_seed(0)
    B, G, H, D, P, n = 2, 4, 4, 32, 300, 5
    R = B * G
    rnd = lambda *s: (torch.randn(*s, generator=g) * 2).bfloat16()  # noqa: E731
    pk, pv = rnd(B, H, P, D), rnd(B, H, P, D)
    layer = CascadeLayer(R, 16)
    layer.update(pk, pv)                                   # the prompts (prefill)
    sk, sv = layer.update(rnd(R, H, n, D), rnd(R, H, n, D))
    query = rnd(R, H, 1, D)
    with autocast("bf16-mixed", "cpu"):
        out, _ = cascade_attention(SimpleNamespace(layer_idx=0), query, sk, sv, None,
                                   wm_cascade=SimpleNamespace(layers=[layer], group_size=G))
    keys = torch.cat([pk.repeat_interleave(G, 0), sk], dim=2)          # (R, H, P+n, D)
    values = torch.cat([pv.repeat_interleave(G, 0), sv], dim=2)
    exact = F.scaled_dot_product_attention(query.float(), keys.float(), values.float())
    sdpa = F.scaled_dot_product_attention(query, keys, values).float()  # bf16 SDPA
    err = (out.float().transpose(1, 2) - exact).abs().max()
    assert err <= 1.5 * (sdpa - exact).abs().max() + 1e-3, (err, (sdpa - exact).abs().max())
