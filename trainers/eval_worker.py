"""The frozen evaluator's child: rebuilds the model from the handed-over weights and scores it.

Its validation tokens arrive through the pipe (they never exist as a file the training child
could find). The functions the score is computed with are bound when this module is imported,
before the candidate's code is, and the audit guard watches the candidate's import, its
build_model and every forward call. Requests:

- evaluate: the mean loss (nats per token) and bits per byte over every validation window, in
  inference mode, the same for a sample of training text (the leak check), whether the weights
  changed, and the per-token losses of two batches for the parent's cross-process probes.
- probe (in a second, fresh process): the same batches again, where a model that peeks at later
  tokens, keeps state, or behaves differently when evaluated gives different numbers.
"""

from __future__ import annotations

import faulthandler
import json
import math
import time
import traceback

import numpy as np
import torch
import torch.nn.functional as F

from kernelbench.core import statuses

from .candidate import entry_point, import_candidate
from .guard import TrainingGuard
from .child import CONFIG_FILE, WEIGHTS_FILE, isolate, set_up_device

_cross_entropy = F.cross_entropy
_inference_mode, _enable_grad, _autocast = torch.inference_mode, torch.enable_grad, torch.autocast
_Tensor, _isfinite, _equal, _as_tensor = torch.Tensor, torch.isfinite, torch.equal, torch.as_tensor
_function_modes, _dispatch_modes = torch._C._len_torch_function_stack, torch._C._len_torch_dispatch_stack
_monotonic, _load = time.monotonic, torch.load
LN2 = math.log(2)


class OutputError(Exception):
    """The model's output is unusable: not a plain tensor, wrong shape, or not finite."""


def main(channel) -> None:
    faulthandler.enable()
    request, payload = channel.receive()
    device = torch.device(request["device"])
    set_up_device(device, request)
    arrays = _split_payload(payload, request["arrays"])
    evaluator = Evaluator(request, arrays, device)
    guard = TrainingGuard(str(device), protected=request["protected"], allowed_paths=[request["candidate_dir"]])
    evaluator.guard = guard
    isolation = isolate(guard, request)
    try:
        with guard.armed():
            evaluator.build = entry_point(import_candidate(request["candidate_dir"]), "build_model")
    except Exception:
        channel.send({"kind": "error", "status": statuses.COMPILE_ERROR, "log": traceback.format_exc(limit=-8)})
        return
    channel.send({"kind": "ready", "isolation": isolation})
    while True:
        message, _ = channel.receive()
        if message["kind"] == "exit":
            return
        try:
            result = evaluator.evaluate(message) if message["kind"] == "evaluate" else evaluator.probe(message)
        except OutputError as exc:
            result = {"status": statuses.REWARD_HACK, "findings": [{"rule": "invalid-output", "evidence": str(exc)}]}
        except Exception:
            result = {"status": statuses.RUNTIME_ERROR, "log": traceback.format_exc(limit=-8)}
        guard.check_state()
        findings = [f.to_json() for f in guard.training_findings()]
        result.setdefault("findings", [])
        result["findings"] += [f for f in findings if f not in result["findings"]]
        channel.send({"kind": "result", **result})


class Evaluator:
    def __init__(self, request: dict, arrays: dict[str, np.ndarray], device: torch.device):
        self.device = device
        self.batch_size, self.seq_len = request["batch_size"], request["seq_len"]
        self.vocab_size = request["vocab_size"]
        self.val = self.windows(arrays["val"])
        self.train_sample = self.windows(arrays["train_sample"]) if "train_sample" in arrays else None
        self.token_bytes = _as_tensor(arrays["token_bytes"].astype(np.float64)) if "token_bytes" in arrays else None
        self.guard = None
        self.build = None

    def windows(self, tokens: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Non-overlapping (x, y) batches of whole windows of seq_len tokens; a partial batch is dropped."""
        T, B = self.seq_len, self.batch_size
        count = (len(tokens) - 1) // T // B * B
        if count == 0:
            raise ValueError(f"{len(tokens)} tokens make no batch of {B} windows of {T} tokens")
        tokens = torch.from_numpy(tokens[: count * T + 1].astype(np.int64))
        x, y = tokens[:-1].view(count, T), tokens[1:].view(count, T)
        return [(x[i: i + B], y[i: i + B]) for i in range(0, count, B)]

    def load(self, message: dict) -> tuple[torch.nn.Module, dict]:
        weights = _load(f"{message['handover']}/{WEIGHTS_FILE}", map_location="cpu", weights_only=True)
        with open(f"{message['handover']}/{CONFIG_FILE}") as f:
            config = json.load(f)
        with self.guard.armed():
            model = self.build(config)
            model.load_state_dict(weights, strict=True)
            model.to(self.device)
        return model, weights

    def evaluate(self, message: dict) -> dict:
        started = _monotonic()
        model, weights = self.load(message)
        model.eval()
        losses, setup_s = [], None
        kept = {message["probe_batch"], len(self.val) - 1}
        per_token = {}
        for index, (x, y) in enumerate(self.val):
            nll = self.nll(model, x, y, train_mode=False)
            if setup_s is None:
                setup_s = _monotonic() - started
            losses.append(nll)
            if index in kept:
                per_token[index] = nll.tolist()
        val_loss, val_bpb = self.summarize(losses, [y for _, y in self.val])
        result = {"status": statuses.PASSED, "val_loss": val_loss, "val_bpb": val_bpb, "setup_s": setup_s,
                  "nll_probe": per_token[message["probe_batch"]], "nll_last": per_token[len(self.val) - 1],
                  "findings": []}
        changed = [name for name, value in model.state_dict().items()
                   if name in weights and not _equal(value.detach().to("cpu"), weights[name])]
        if changed:
            result["findings"].append({"rule": "weights-changed-during-eval",
                                       "evidence": f"{len(changed)} tensors changed while evaluated: {', '.join(changed[:5])}"})
        if self.train_sample is not None and message.get("leak_check", True):
            train_losses = [self.nll(model, x, y, train_mode=False) for x, y in self.train_sample]
            result["train_loss"], result["train_bpb"] = self.summarize(train_losses, [y for _, y in self.train_sample])
        result["eval_s"] = _monotonic() - started
        return result

    def probe(self, message: dict) -> dict:
        """A fresh process's view of the same batches: mixed future (eval mode), the probe batch in
        train mode, the last batch (eval mode), in this order."""
        model, _ = self.load(message)
        j, k, other = message["probe_batch"], message["split_at"], message["other_batch"]
        x, y = self.val[j]
        mixed = x.clone()
        mixed[:, k:] = self.val[other][0][:, k:]
        model.eval()
        mixed_nll = self.nll(model, mixed, y, train_mode=False)[:, :k]
        model.train()
        train_nll = self.nll(model, x, y, train_mode=True)
        model.eval()
        last_nll = self.nll(model, *self.val[-1], train_mode=False)
        return {"status": statuses.PASSED, "nll_mixed": mixed_nll.tolist(), "nll_train_mode": train_nll.tolist(),
                "nll_last": last_nll.tolist(), "findings": []}

    def nll(self, model, x: torch.Tensor, y: torch.Tensor, *, train_mode: bool) -> torch.Tensor:
        """Per-token loss in nats, (B, T) float64 on the CPU; the model runs under the guard."""
        x, y = x.to(self.device), y.to(self.device)
        cuda = self.device.type == "cuda"
        context = _enable_grad() if train_mode else _inference_mode()
        with context, _autocast(self.device.type, dtype=torch.bfloat16, enabled=cuda):
            with self.guard.armed():
                logits = model(x)
        if type(logits) is not _Tensor:
            raise OutputError(f"the model returned a {type(logits).__module__}.{type(logits).__qualname__}, "
                              "not a plain torch.Tensor")
        B, T = x.shape
        if logits.dim() != 3 or tuple(logits.shape[:2]) != (B, T) or logits.shape[2] < self.vocab_size:
            raise OutputError(f"logits of shape {tuple(logits.shape)}, expected ({B}, {T}, >= {self.vocab_size})")
        if _function_modes() or _dispatch_modes():
            self.guard.record("monkeypatch", "a torch function or dispatch mode is active while the loss is computed")
        with _inference_mode():
            logits = logits.detach().float()
            if not bool(_isfinite(logits).all()):
                raise OutputError("the logits hold NaN or Inf")
            nll = _cross_entropy(logits.view(B * T, -1), y.reshape(-1), reduction="none")
            return nll.view(B, T).to("cpu", torch.float64)

    def summarize(self, losses: list[torch.Tensor], targets: list[torch.Tensor]) -> tuple[float, float | None]:
        """Mean nats per token, and bits per byte over the tokens that stand for bytes."""
        nll, y = torch.cat([l.reshape(-1) for l in losses]), torch.cat([t.reshape(-1) for t in targets])
        loss = float(nll.mean())
        if self.token_bytes is None:
            return loss, None
        nbytes = self.token_bytes[y]
        return loss, float((nll * (nbytes > 0)).sum() / (LN2 * nbytes.sum()))


def _split_payload(payload: bytes, layout: list[list]) -> dict[str, np.ndarray]:
    """The payload is arrays back to back: layout [[name, dtype, count], ...]."""
    arrays, offset = {}, 0
    for name, dtype, count in layout:
        array = np.frombuffer(payload, dtype=dtype, count=count, offset=offset)
        arrays[name] = array
        offset += array.nbytes
    return arrays
