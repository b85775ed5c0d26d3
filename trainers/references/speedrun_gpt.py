"""Reference candidate for `kb train speedrun`: a compact modern GPT racing to a validation loss.

Start here. The model: token embedding, pre-norm blocks (RMSNorm, causal attention with rotary
position embeddings and normalized queries and keys, a ReLU^2 MLP), untied output head; output
projections start at zero, so every block starts as the identity. The optimizer: Muon
(torch.optim.Muon, orthogonalized momentum) for the blocks' matrices, AdamW for the embedding and
the head. The schedule runs on the clock toward a horizon (`horizon_s`, by default half the
budget: the time the run is expected to need): the learning rate warms up over its first 2%,
decays linearly over its last 40% to a floor of 10%, and stays there if the target has not been
reached by then. The harness stops the run at the first checkpoint at or below the target.
bf16 autocast on CUDA; `--param compile=1` compiles the training step.

Hyperparameters (`--param name=value`, or a search space) and their defaults per device:
d_model, n_layer, n_head, batch_size, seq_len (training window), lr_muon, lr_adam, horizon_s, compile.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULTS = {
    "cpu": {"d_model": 128, "n_layer": 2, "n_head": 4, "batch_size": 16, "seq_len": 128, "lr_muon": 0.02,
            "lr_adam": 0.006, "compile": 0},
    "cuda": {"d_model": 384, "n_layer": 6, "n_head": 6, "batch_size": 64, "seq_len": 256, "lr_muon": 0.02,
             "lr_adam": 0.004, "compile": 0},
}
WARMUP, WARMDOWN, FLOOR = 0.02, 0.4, 0.1


class Rotary(nn.Module):
    def __init__(self, head_dim: int):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, head_dim, 2).float() / head_dim),
                             persistent=False)

    def forward(self, x):  # x: (B, H, T, D)
        angles = torch.outer(torch.arange(x.shape[2], device=x.device).float(), self.inv_freq)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Block(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.up = nn.Linear(d, 4 * d, bias=False)
        self.down = nn.Linear(4 * d, d, bias=False)
        self.rotary = Rotary(d // n_head)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.down.weight)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(F.rms_norm(x, (C,))).view(B, T, 3, self.n_head, C // self.n_head).transpose(1, 3).unbind(2)
        q, k = self.rotary(F.rms_norm(q, (q.shape[-1],))), self.rotary(F.rms_norm(k, (k.shape[-1],)))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.down(F.relu(self.up(F.rms_norm(x, (C,)))).square())


class GPT(nn.Module):
    def __init__(self, vocab_size: int, d_model: int, n_layer: int, n_head: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_head) for _ in range(n_layer))
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=1.0)
        nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(d_model))

    def forward(self, idx):
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        return self.head(F.rms_norm(x, (x.shape[-1],)))


def build_model(config):
    return GPT(config["vocab_size"], config["d_model"], config["n_layer"], config["n_head"])


def train(ctx):
    hp = {**DEFAULTS[ctx.device.type], **ctx.params}
    config = {"vocab_size": ctx.vocab_size, "d_model": int(hp["d_model"]), "n_layer": int(hp["n_layer"]),
              "n_head": int(hp["n_head"])}
    model = build_model(config).to(ctx.device)
    ctx.watch(model, config)
    matrices = [p for p in model.blocks.parameters() if p.ndim == 2]
    muon = torch.optim.Muon(matrices, lr=hp["lr_muon"], momentum=0.95, weight_decay=0.0, adjust_lr_fn="match_rms_adamw")
    adam = torch.optim.AdamW([model.embed.weight, model.head.weight], lr=hp["lr_adam"], betas=(0.8, 0.95),
                             weight_decay=0.0, fused=ctx.device.type == "cuda")
    optimizers = [(muon, hp["lr_muon"]), (adam, hp["lr_adam"])]
    horizon = float(hp.get("horizon_s", ctx.budget_s / 2))
    step = torch.compile(train_step) if int(hp["compile"]) else train_step
    for index, (x, y) in enumerate(ctx.batches(int(hp["batch_size"]), int(hp["seq_len"]))):
        progress = ctx.elapsed() / horizon
        scale = max(min(progress / WARMUP, 1.0, (1.0 - progress) / WARMDOWN), FLOOR)
        for optimizer, lr in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr * scale
        loss = step(model, x, y, ctx.device.type == "cuda")
        for optimizer, _ in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if index % 50 == 0:  # float() waits for the GPU: not every step
            ctx.log(step=index, loss=float(loss), progress=round(progress, 3))


def train_step(model, x, y, cuda):
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        loss = F.cross_entropy(model(x).float().flatten(0, 1), y.flatten())
    loss.backward()
    return loss.detach()
