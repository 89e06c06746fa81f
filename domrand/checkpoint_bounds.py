"""Bounds on the architecture configs stored in checkpoints, checked before any network is built.

A checkpoint's config is data from a file: a tampered or corrupt one could ask for a network of
terabytes (``channel_base=2**40``) or hundreds of thousands of layers. ``check_config`` validates
every field of the built-in networks' exported configs (types and sane ranges) and
``min_parameters`` gives a lower bound of the parameter count the config implies, which
``checkpoint.build_network`` compares with the tensors actually in the file before allocating.

Every failure raises ``CheckpointError`` naming the file, the key and the accepted form.
"""

from __future__ import annotations

import math
from typing import Any, Callable

RES_MIN, RES_MAX = 16, 512  # what the networks' block_resolutions accepts
MAX_DIM = 4096  # z_dim, w_dim, channel_max, fpn/head channels
MAX_CHANNEL_BASE = 2**16
MAX_MAPPING_LAYERS = 32
MAX_FIR_TAPS = 16
MAX_NUM_WS = 64
MAX_HASH_LEN = 128


class ConfigBoundsError(ValueError):
    """One field of a stored config is missing, of the wrong type or out of bounds (``key``, ``form``)."""

    def __init__(self, key: str, value: Any, form: str):
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        super().__init__(f"config key {key!r} = {shown} is invalid; accepted: {form}")
        self.key, self.form = key, form


# ---- field checkers ---------------------------------------------------------------------------


def _int(d: dict[str, Any], key: str, lo: int, hi: int, prefix: str, default: Any = ...) -> int:
    value = _get(d, key, prefix, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigBoundsError(prefix + key, value, f"an integer in [{lo}, {hi}]")
    return value


def _pow2(d: dict[str, Any], key: str, lo: int, hi: int, prefix: str, default: Any = ...) -> int:
    value = _get(d, key, prefix, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi or value & (value - 1):
        raise ConfigBoundsError(prefix + key, value, f"a power of two in [{lo}, {hi}]")
    return value


def _float(d: dict[str, Any], key: str, lo: float, hi: float, prefix: str, default: Any = ..., none_ok: bool = False) -> float | None:
    value = _get(d, key, prefix, default)
    if value is None and none_ok:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and lo <= value <= hi
    if not ok:
        form = f"a finite number in [{lo:g}, {hi:g}]" + (" or null" if none_ok else "")
        raise ConfigBoundsError(prefix + key, value, form)
    return float(value)


def _bool(d: dict[str, Any], key: str, prefix: str, default: Any = ...) -> bool:
    value = _get(d, key, prefix, default)
    if not isinstance(value, bool):
        raise ConfigBoundsError(prefix + key, value, "true or false")
    return value


def _fir(d: dict[str, Any], key: str, prefix: str, default: Any = ...) -> None:
    value = _get(d, key, prefix, default)
    form = f"a list of 1 to {MAX_FIR_TAPS} integers in [-1000, 1000] with a non-zero sum"
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_FIR_TAPS:
        raise ConfigBoundsError(prefix + key, value, form)
    if any(isinstance(v, bool) or not isinstance(v, int) or abs(v) > 1000 for v in value) or sum(value) == 0:
        raise ConfigBoundsError(prefix + key, value, form)


def _get(d: dict[str, Any], key: str, prefix: str, default: Any) -> Any:
    if key in d:
        return d[key]
    if default is ...:
        raise ConfigBoundsError(prefix + key, None, "a value (the key is missing)")
    return default


def _mapping(data: Any, key: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigBoundsError(key, data, "a JSON object")
    return data


def _known(d: dict[str, Any], names: set[str], prefix: str) -> None:
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigBoundsError(prefix + unknown[0], d[unknown[0]], f"one of the keys {', '.join(sorted(names))}")


def _channels(r: int, base: int, cmax: int) -> int:
    return int(min(base // r, cmax))


# ---- per-network checks -----------------------------------------------------------------------

_NETWORK_KEYS = {
    "resolution", "z_dim", "w_dim", "mapping_layers", "mapping_lr_mult", "w_avg_beta", "channel_base",
    "channel_max", "conv_clamp", "fir_kernel", "num_fp16_res", "mbstd_group", "mbstd_channels",
}


def _check_stylegan_network(net: dict[str, Any]) -> dict[str, int]:
    p = "network."
    _known(net, _NETWORK_KEYS, p)
    out = {
        "resolution": _pow2(net, "resolution", RES_MIN, RES_MAX, p, 64),
        "z_dim": _int(net, "z_dim", 1, MAX_DIM, p, 256),
        "w_dim": _int(net, "w_dim", 1, MAX_DIM, p, 256),
        "mapping_layers": _int(net, "mapping_layers", 1, MAX_MAPPING_LAYERS, p, 8),
        "channel_base": _int(net, "channel_base", 1, MAX_CHANNEL_BASE, p, 8192),
        "channel_max": _int(net, "channel_max", 1, MAX_DIM, p, 512),
    }
    _float(net, "mapping_lr_mult", 1e-6, 100.0, p, 0.01)
    _float(net, "w_avg_beta", 0.0, 1.0, p, 0.995)
    _float(net, "conv_clamp", 1e-6, 1e6, p, 256.0, none_ok=True)
    _fir(net, "fir_kernel", p, [1, 3, 3, 1])
    _int(net, "num_fp16_res", 0, 16, p, 0)
    _int(net, "mbstd_group", 1, 1024, p, 4)
    _int(net, "mbstd_channels", 1, 64, p, 1)
    if _channels(out["resolution"], out["channel_base"], out["channel_max"]) < 1:
        raise ConfigBoundsError(p + "channel_base", out["channel_base"], f"at least the resolution ({out['resolution']}) so every block has a channel")
    return out


def check_generator(config: Any) -> int:
    """Validate a Generator's exported config; returns a lower bound of its parameter count."""
    config = _mapping(config, "config")
    _known(config, {"network", "img_channels"}, "")
    n = _check_stylegan_network(_mapping(config.get("network"), "network"))
    _int(config, "img_channels", 1, 4, "", 3)
    res = [2**i for i in range(2, int(math.log2(n["resolution"])) + 1)]
    synth = sum(9 * _channels(r, n["channel_base"], n["channel_max"]) ** 2 for r in res)
    mapping = n["z_dim"] * n["w_dim"] + (n["mapping_layers"] - 1) * n["w_dim"] ** 2
    return synth + mapping


def check_discriminator(config: Any) -> int:
    """Validate a Discriminator's exported config; returns a lower bound of its parameter count."""
    config = _mapping(config, "config")
    _known(config, {"network", "img_channels", "progressive"}, "")
    n = _check_stylegan_network(_mapping(config.get("network"), "network"))
    _int(config, "img_channels", 1, 4, "", 3)
    _bool(config, "progressive", "", False)
    res = [2**i for i in range(3, int(math.log2(n["resolution"])) + 1)]
    return sum(9 * _channels(r, n["channel_base"], n["channel_max"]) ** 2 for r in res)


_INV_NET_KEYS = {
    "keep_resolution", "spatial_latent", "channel_base", "channel_max", "fpn_channels", "head_channels",
    "blocks_per_level", "max_head_resolution",
}
_INV_GEN_KEYS = {"resolution", "num_ws", "w_dim", "ws_resolutions", "keep_channels"}


def _check_inverter_generator(gen: dict[str, Any]) -> dict[str, int]:
    p = "generator."
    _known(gen, _INV_GEN_KEYS, p)
    out = {
        "resolution": _pow2(gen, "resolution", RES_MIN, RES_MAX, p),
        "num_ws": _int(gen, "num_ws", 1, MAX_NUM_WS, p),
        "w_dim": _int(gen, "w_dim", 1, MAX_DIM, p),
        "keep_channels": _int(gen, "keep_channels", 1, MAX_DIM, p),
    }
    ws_res = _get(gen, "ws_resolutions", p, ...)
    form = f"a list of {out['num_ws']} powers of two in [4, {out['resolution']}] (one per ws)"
    if not isinstance(ws_res, list) or len(ws_res) != out["num_ws"]:
        raise ConfigBoundsError(p + "ws_resolutions", ws_res, form)
    for r in ws_res:
        if isinstance(r, bool) or not isinstance(r, int) or not 4 <= r <= out["resolution"] or r & (r - 1):
            raise ConfigBoundsError(p + "ws_resolutions", ws_res, form)
    out["distinct_ws_resolutions"] = len(set(ws_res))
    return out


def check_inverter(config: Any) -> int:
    """Validate an Inverter's exported config; returns a lower bound of its parameter count."""
    config = _mapping(config, "config")
    _known(config, {"network", "generator", "generator_hash", "fir_kernel"}, "")
    net = _mapping(config.get("network"), "network")
    gen = _check_inverter_generator(_mapping(config.get("generator"), "generator"))
    p = "network."
    _known(net, _INV_NET_KEYS, p)
    keep = _pow2(net, "keep_resolution", 4, gen["resolution"] // 2, p, 16)
    spatial = _bool(net, "spatial_latent", p, True)
    base = _int(net, "channel_base", 1, MAX_CHANNEL_BASE, p, 4096)
    cmax = _int(net, "channel_max", 1, MAX_DIM, p, 256)
    fc = _int(net, "fpn_channels", 1, MAX_DIM, p, 128)
    hc = _int(net, "head_channels", 1, MAX_DIM, p, 128)
    blocks = _int(net, "blocks_per_level", 0, 16, p, 1)
    _pow2(net, "max_head_resolution", 4, RES_MAX, p, 32)
    h = config.get("generator_hash", "")
    if not isinstance(h, str) or len(h) > MAX_HASH_LEN:
        raise ConfigBoundsError("generator_hash", h, f"a string of at most {MAX_HASH_LEN} characters")
    _fir(config, "fir_kernel", "", [1, 3, 3, 1])
    if _channels(gen["resolution"], base, cmax) < 1:
        raise ConfigBoundsError(p + "channel_base", base, f"at least the resolution ({gen['resolution']})")
    levels = [2**i for i in range(2, int(math.log2(gen["resolution"])) + 1)]
    total = 0
    for r in levels:
        c = _channels(r, base, cmax)
        total += 9 * fc * fc + c * fc + 2 * 9 * c * c * blocks + (9 * c * c if r > 4 else 0)
    w, kc = gen["w_dim"], gen["keep_channels"]
    heads = gen["num_ws"] * w * w + gen["distinct_ws_resolutions"] * min(fc, hc) * 16 * w
    return total + heads + kc * keep * keep + (9 * hc * (fc + kc) if spatial else 0)


def check_student(config: Any) -> int:
    """Validate a StudentNet's exported config; returns a lower bound of its parameter count."""
    config = _mapping(config, "config")
    _known(config, {"student"}, "")
    net = _mapping(config.get("student"), "student")
    p = "student."
    _known(net, {"resolution", "w_dim", "channels", "res_blocks", "noise_maps"}, p)
    _pow2(net, "resolution", RES_MIN, RES_MAX, p, 64)
    w = _int(net, "w_dim", 1, MAX_DIM, p, 256)
    blocks = _int(net, "res_blocks", 0, 64, p, 2)
    k = _int(net, "noise_maps", 0, 16, p, 0)
    ch = net.get("channels", [16, 32, 64])
    form = "a list of 2 to 6 integers in [1, 1024]"
    if not isinstance(ch, list) or not 2 <= len(ch) <= 6 or not all(type(c) is int and 1 <= c <= 1024 for c in ch):
        raise ConfigBoundsError(p + "channels", ch, form)
    convs = sum(9 * a * b for a, b in zip([3, *ch[:-1]], ch)) + 2 * blocks * 9 * ch[-1] ** 2
    decoder = sum(9 * (ch[i + 1] + ch[i] + k) * ch[i] + 2 * w * ch[i] for i in range(len(ch) - 1))
    return convs + decoder


CHECKS: dict[str, Callable[[Any], int]] = {
    "StudentNet": check_student,
    "Generator": check_generator,
    "Discriminator": check_discriminator,
    "Inverter": check_inverter,
}
