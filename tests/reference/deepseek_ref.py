#!/usr/bin/env python3
"""Independent float64 reference of the DeepSeek-V2/V3 forward pass, for tests.

Written from the published architecture (DeepSeek-V2 and DeepSeek-V3 technical
reports: multi-head latent attention, DeepSeekMoE with shared experts, auxiliary-loss
free routing with group-limited selection, YaRN rope scaling). It shares no code with
the C++ engine: it parses the Hugging Face folder itself (config.json, safetensors
shards), decodes BF16 and FP8 E4M3 from their bit layouts, and runs every layer in
float64 with the plain (non-absorbed) attention over the whole sequence.

    python3 deepseek_ref.py --model DIR --prompt-ids 1,2,3 --max-tokens 16 > out.json

prints one JSON object:
  prompt_ids      the prompt as given (no BOS added)
  logits          [len(prompt)][vocab] logits at every prompt position
  tokens          greedy continuation of --max-tokens tokens (no stop at EOS)
  greedy_margins  per generated token: top-1 minus top-2 logit (near ties show here)
  experts         {"<layer>": [[expert ids in selection order] per prompt position]},
                  one entry per MoE layer (is_moe_layer)
  route_margins   {"<layer>": [per prompt position: the smallest selection gap]}, the
                  distance of the routing decision from a tie (see route())
  mtp_logits      with --mtp: [len(prompt) - 1][vocab] logits of the MTP module at
                  positions 0 .. len(prompt) - 2 (row j: hidden state j, token j + 1)
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

# ---------------------------------------------------------------------------- weights


def fp8_e4m3_table():
    """All 256 float8_e4m3fn values: 1 sign, 4 exponent (bias 7), 3 mantissa bits;
    no infinities, S.1111.111 is NaN, exponent 0 is subnormal (m/8 * 2^-6)."""
    table = np.zeros(256, dtype=np.float64)
    for byte in range(256):
        sign = -1.0 if byte & 0x80 else 1.0
        exponent = (byte >> 3) & 0xF
        mantissa = byte & 0x7
        if exponent == 0xF and mantissa == 0x7:
            value = math.nan
        elif exponent == 0:
            value = mantissa / 8.0 * 2.0 ** -6
        else:
            value = (1.0 + mantissa / 8.0) * 2.0 ** (exponent - 7)
        table[byte] = sign * value
    return table


FP8_TABLE = fp8_e4m3_table()


class Checkpoint:
    """Tensors of a Hugging Face folder, decoded to float64 on request."""

    def __init__(self, folder):
        self.folder = folder
        self.entries = {}  # name -> (file, dtype, shape, begin, end)
        index_path = os.path.join(folder, "model.safetensors.index.json")
        if os.path.exists(index_path):
            with open(index_path) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        else:
            files = ["model.safetensors"]
        for name in files:
            self._read_header(os.path.join(folder, name))

    def _read_header(self, path):
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        base = 8 + length
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            self.entries[name] = (path, info["dtype"], info["shape"], base + begin, base + end)

    def has(self, name):
        return name in self.entries

    def raw(self, name):
        path, dtype, shape, begin, end = self.entries[name]
        with open(path, "rb") as f:
            f.seek(begin)
            data = f.read(end - begin)
        return dtype, shape, data

    def get(self, name):
        """The real-valued tensor: FP8 weights are multiplied by their block scales."""
        dtype, shape, data = self.raw(name)
        if dtype == "F32":
            values = np.frombuffer(data, dtype="<f4").astype(np.float64)
        elif dtype == "F64":
            values = np.frombuffer(data, dtype="<f8").astype(np.float64)
        elif dtype == "BF16":
            bits = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
            values = bits.view(np.float32).astype(np.float64)
        elif dtype == "F16":
            values = np.frombuffer(data, dtype="<f2").astype(np.float64)
        elif dtype == "F8_E4M3":
            values = FP8_TABLE[np.frombuffer(data, dtype=np.uint8)]
        else:
            raise ValueError(f"{name}: unsupported dtype {dtype}")
        values = values.reshape(shape)
        if dtype == "F8_E4M3":
            values = apply_block_scales(values, self.get(name + "_scale_inv"))
        return values


def apply_block_scales(values, scale_inv, block=128):
    """Multiplies each block x block tile of a 2-D weight by its scale (edge tiles partial)."""
    rows, cols = values.shape
    expanded = np.repeat(np.repeat(scale_inv, block, axis=0), block, axis=1)
    return values * expanded[:rows, :cols]


# ------------------------------------------------------------------------------ math


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def silu(x):
    return x / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def top_k_indices(x, k):
    """Indices of the k largest values, descending; ties go to the lower index."""
    return np.argsort(-x, kind="stable")[:k]


def yarn_get_mscale(scale, mscale):
    if scale <= 1.0:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


class Rope:
    """Rotary embedding of the rope part: adjacent pairs (x[2i], x[2i+1]) rotate by
    position * inv_freq[i]. With YaRN, frequencies between the correction dims blend
    interpolation (inv_freq / factor) and extrapolation, and cos/sin carry
    mscale(factor, mscale) / mscale(factor, mscale_all_dim)."""

    def __init__(self, config):
        dim = config["qk_rope_head_dim"]
        base = float(config.get("rope_theta", 10000.0))
        exponents = np.arange(0, dim, 2, dtype=np.float64) / dim
        inv_freq = 1.0 / base**exponents
        self.magnitude = 1.0
        scaling = config.get("rope_scaling")
        if scaling:
            kind = scaling.get("type", scaling.get("rope_type"))
            if kind != "yarn":
                raise ValueError(f"rope_scaling type {kind} is not supported")
            factor = float(scaling["factor"])
            original = float(scaling["original_max_position_embeddings"])
            beta_fast = float(scaling.get("beta_fast", 32))
            beta_slow = float(scaling.get("beta_slow", 1))

            def correction_dim(rotations):
                return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

            low = max(math.floor(correction_dim(beta_fast)), 0)
            high = min(math.ceil(correction_dim(beta_slow)), dim - 1)
            if low == high:
                high += 0.001
            ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
            extrapolate = 1.0 - ramp
            inv_freq = inv_freq / factor * (1.0 - extrapolate) + inv_freq * extrapolate
            self.magnitude = yarn_get_mscale(factor, float(scaling.get("mscale", 1))) / yarn_get_mscale(
                factor, float(scaling.get("mscale_all_dim", 0))
            )
        self.inv_freq = inv_freq

    def apply(self, x, positions):
        """x: [..., tokens, dim] with tokens matching positions."""
        angles = np.outer(positions, self.inv_freq)  # [tokens, dim/2]
        cos = np.cos(angles) * self.magnitude
        sin = np.sin(angles) * self.magnitude
        even = x[..., 0::2]
        odd = x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = even * cos - odd * sin
        out[..., 1::2] = even * sin + odd * cos
        return out


def softmax_scale(config):
    head_dim = config["qk_nope_head_dim"] + config["qk_rope_head_dim"]
    scale = head_dim**-0.5
    scaling = config.get("rope_scaling")
    if scaling:
        mscale_all_dim = float(scaling.get("mscale_all_dim", 0))
        if mscale_all_dim:
            m = yarn_get_mscale(float(scaling["factor"]), mscale_all_dim)
            scale *= m * m
    return scale


# ---------------------------------------------------------------------------- layers


class Model:
    def __init__(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            self.config = json.load(f)
        self.ckpt = Checkpoint(folder)
        self.cache = {}
        c = self.config
        self.is_v3 = c.get("model_type") == "deepseek_v3"
        self.scoring = c.get("scoring_func", "sigmoid" if self.is_v3 else "softmax")
        self.topk_method = c.get("topk_method", "noaux_tc" if self.is_v3 else "greedy")
        self.rope = Rope(c)
        self.scale = softmax_scale(c)
        self.eps = float(c.get("rms_norm_eps", 1e-6))

    def w(self, name):
        if name not in self.cache:
            self.cache[name] = self.ckpt.get(name)
        return self.cache[name]

    def linear(self, x, name):
        return x @ self.w(name + ".weight").T

    def is_moe_layer(self, layer):
        """Hugging Face's rule (modeling_deepseek.py, DeepseekV3DecoderLayer): a DeepSeekMoE
        block when the model has routed experts, layer >= first_k_dense_replace and
        layer % moe_layer_freq == 0; a dense MLP otherwise."""
        c = self.config
        return (
            c.get("n_routed_experts")
            and layer >= c.get("first_k_dense_replace", 0)
            and layer % c.get("moe_layer_freq", 1) == 0
        )

    def attention(self, x, layer, positions):
        c = self.config
        p = f"model.layers.{layer}.self_attn."
        heads = c["num_attention_heads"]
        nope, rope_dim, v_dim = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        latent_dim = c["kv_lora_rank"]
        t = x.shape[0]
        if c.get("q_lora_rank"):
            q = self.linear(rms_norm(self.linear(x, p + "q_a_proj"), self.w(p + "q_a_layernorm.weight"), self.eps), p + "q_b_proj")
        else:
            q = self.linear(x, p + "q_proj")
        q = q.reshape(t, heads, nope + rope_dim).transpose(1, 0, 2)  # [heads, t, d]
        q_nope, q_rope = q[..., :nope], self.rope.apply(q[..., nope:], positions)
        kv_a = self.linear(x, p + "kv_a_proj_with_mqa")
        latent = rms_norm(kv_a[:, :latent_dim], self.w(p + "kv_a_layernorm.weight"), self.eps)
        k_rope = self.rope.apply(kv_a[:, latent_dim:], positions)  # [t, rope], shared by heads
        kv = self.linear(latent, p + "kv_b_proj").reshape(t, heads, nope + v_dim).transpose(1, 0, 2)
        k_nope, v = kv[..., :nope], kv[..., nope:]
        scores = (q_nope @ k_nope.transpose(0, 2, 1) + q_rope @ k_rope.T) * self.scale
        causal = np.triu(np.ones((t, t), dtype=bool), k=1)
        scores = np.where(causal, -np.inf, scores)
        out = softmax(scores) @ v  # [heads, t, v]
        return self.linear(out.transpose(1, 0, 2).reshape(t, heads * v_dim), p + "o_proj")

    def mlp(self, x, prefix):
        return self.linear(silu(self.linear(x, prefix + "gate_proj")) * self.linear(x, prefix + "up_proj"), prefix + "down_proj")

    def route(self, logits_row, bias):
        """Selects experts for one token. Returns (ids, weights, margin) where margin is
        the smallest gap between a kept and a dropped candidate (group or expert)."""
        c = self.config
        k = c["num_experts_per_tok"]
        if self.scoring == "sigmoid":
            scores = 1.0 / (1.0 + np.exp(-logits_row))
        elif self.scoring == "softmax":
            scores = softmax(logits_row)
        else:
            raise ValueError(f"scoring_func {self.scoring} is not supported")
        choice = scores + bias if bias is not None else scores.copy()
        margin = math.inf
        n_group = c.get("n_group") or 1
        topk_group = c.get("topk_group") or n_group
        if self.topk_method in ("noaux_tc", "group_limited_greedy") and n_group > 1:
            grouped = choice.reshape(n_group, -1)
            if self.topk_method == "noaux_tc":
                group_scores = np.sort(grouped, axis=1)[:, -2:].sum(axis=1)
            else:
                group_scores = grouped.max(axis=1)
            kept = top_k_indices(group_scores, topk_group)
            if topk_group < n_group:
                ordered = np.sort(group_scores)[::-1]
                margin = min(margin, ordered[topk_group - 1] - ordered[topk_group])
            mask = np.full(n_group, True)
            mask[kept] = False
            grouped = np.where(mask[:, None], -np.inf, grouped)
            choice = grouped.reshape(-1)
        elif self.topk_method not in ("noaux_tc", "greedy", "group_limited_greedy"):
            raise ValueError(f"topk_method {self.topk_method} is not supported")
        ids = top_k_indices(choice, k)
        ordered = np.sort(choice)[::-1]
        if np.isfinite(ordered[k]):
            margin = min(margin, ordered[k - 1] - ordered[k])
        weights = scores[ids]
        normalise = k > 1 and c.get("norm_topk_prob", False)
        if normalise:
            weights = weights / (weights.sum() + 1e-20)
        if self.is_v3 or not normalise:
            weights = weights * float(c.get("routed_scaling_factor", 1.0))
        return ids, weights, margin

    def moe(self, x, layer, record):
        c = self.config
        p = f"model.layers.{layer}.mlp."
        router_logits = x @ self.w(p + "gate.weight").T
        bias = self.w(p + "gate.e_score_correction_bias") if self.ckpt.has(p + "gate.e_score_correction_bias") else None
        out = np.zeros_like(x)
        chosen, margins = [], []
        for t in range(x.shape[0]):
            ids, weights, margin = self.route(router_logits[t], bias)
            chosen.append([int(i) for i in ids])
            margins.append(float(margin))
            for e, g in zip(ids, weights):
                out[t] += g * self.mlp(x[t : t + 1], f"{p}experts.{e}.")[0]
        if c.get("n_shared_experts"):
            out += self.mlp(x, p + "shared_experts.")
        record[str(layer)] = {"experts": chosen, "margins": margins}
        return out

    def block(self, x, layer, positions, record):
        """One decoder layer (attention, then MoE or dense MLP, each with its residual)."""
        p = f"model.layers.{layer}."
        x = x + self.attention(rms_norm(x, self.w(p + "input_layernorm.weight"), self.eps), layer, positions)
        h = rms_norm(x, self.w(p + "post_attention_layernorm.weight"), self.eps)
        return x + (self.moe(h, layer, record) if self.is_moe_layer(layer) else self.mlp(h, p + "mlp."))

    def forward(self, ids):
        """Logits [len(ids), vocab], the final (normed) hidden states and the routing
        record of every MoE layer."""
        c = self.config
        x = self.w("model.embed_tokens.weight")[np.asarray(ids)]
        positions = np.arange(len(ids), dtype=np.float64)
        record = {}
        for layer in range(c["num_hidden_layers"]):
            x = self.block(x, layer, positions, record)
        x = rms_norm(x, self.w("model.norm.weight"), self.eps)
        return x @ self.w("lm_head.weight").T, x, record

    def mtp(self, hidden, next_ids):
        """The first MTP module (DeepSeek-V3 report, section 2.2): its position j combines
        the main model's final hidden state h_j with the embedding of token j + 1,
        h'_j = block(eh_proj([enorm(embed(t_{j+1})) ; hnorm(h_j)])), and predicts token
        j + 2 with shared_head. The module's own embed/head copies when stored, else the
        main model's."""
        layer = self.config["num_hidden_layers"]
        p = f"model.layers.{layer}."
        embed = p + "embed_tokens.weight" if self.ckpt.has(p + "embed_tokens.weight") else "model.embed_tokens.weight"
        head = p + "shared_head.head.weight" if self.ckpt.has(p + "shared_head.head.weight") else "lm_head.weight"
        e = rms_norm(self.w(embed)[np.asarray(next_ids)], self.w(p + "enorm.weight"), self.eps)
        h = rms_norm(hidden, self.w(p + "hnorm.weight"), self.eps)
        x = np.concatenate([e, h], axis=-1) @ self.w(p + "eh_proj.weight").T
        x = self.block(x, layer, np.arange(len(next_ids), dtype=np.float64), {})
        x = rms_norm(x, self.w(p + "shared_head.norm.weight"), self.eps)
        return x @ self.w(head).T


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompt-ids", required=True)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--mtp", action="store_true", help="also mtp_logits")
    args = parser.parse_args()
    prompt = [int(v) for v in args.prompt_ids.split(",")]
    model = Model(args.model)

    logits, hidden, record = model.forward(prompt)
    sequence = list(prompt)
    tokens, margins = [], []
    last = logits[-1]
    for step in range(args.max_tokens):
        order = np.argsort(-last, kind="stable")
        tokens.append(int(order[0]))
        margins.append(float(last[order[0]] - last[order[1]]))
        sequence.append(int(order[0]))
        if step + 1 < args.max_tokens:
            last = model.forward(sequence)[0][-1]

    extra = {}
    if args.mtp:
        extra["mtp_logits"] = model.mtp(hidden[:-1], prompt[1:]).tolist()
    json.dump(
        {
            **extra,
            "prompt_ids": prompt,
            "logits": logits.tolist(),
            "tokens": tokens,
            "greedy_margins": margins,
            "experts": {k: v["experts"] for k, v in record.items()},
            "route_margins": {k: v["margins"] for k, v in record.items()},
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
