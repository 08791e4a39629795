"""A dictionary of concepts on top of a layer: a sparse autoencoder (TopK, BatchTopK, ReLU) or an NMF.

Features are read as *rows*: every spatial position of an N×D×h×w map, every token of N×T×D tokens, or the rows
of N×D, each a D-vector in the layer's channel space. A dictionary of K concepts maps a row x to codes z (K, ≥ 0)
and back::

    pre = x · Wₑᵀ + bₑ                 encoder.weight Wₑ: K×D, encoder.bias bₑ: K   (nn.Linear(D, K))
    z   = sparse(ReLU(pre))            topk: the top_k largest per row; batchtopk: those ≥ threshold;
                                       relu: all; nmf: non-negative least squares (below)
    x̂   = z · W_dᵀ + b_d               decoder.weight W_d: D×K, decoder.bias b_d: D   (nn.Linear(K, D))

Column k of W_d is concept k's *atom*, its direction in channel space. An NMF (A ≈ Z·D, Z, D ≥ 0) is stored
with W_d = Dᵀ, b_d = 0 and Wₑ = pinv(W_d) (the least-squares codes, clipped at 0, start the solver); its codes
are the non-negative least-squares solution min_z≥0 ‖x − z·W_dᵀ‖², found by ``encode_steps`` accelerated
projected-gradient steps (FISTA), differentiable through autograd.

Files (``load_dictionary``):

* ours: ``NAME.safetensors`` with the four tensors above, plus ``NAME.json`` beside it (configuration and
  training figures; the same JSON is also in the safetensors metadata under ``preimage``);
* a plain state dict (``.pt``/``.pth``/``.bin`` saved by ``torch.save``, or ``.safetensors``) with
  ``encoder.weight`` K×D, ``encoder.bias`` K, ``decoder.weight`` D×K, ``decoder.bias`` D (biases optional: 0),
  or the SAELens/OpenAI layout ``W_enc`` D×K, ``b_enc`` K, ``W_dec`` K×D, ``b_dec`` D (``b_dec`` is then
  subtracted before encoding, as those SAEs do);
* an ``overcomplete`` (0.3.0) model's state dict (``torch.save(model.state_dict(), path)``): a TopKSAE /
  BatchTopKSAE / SAE with the default linear encoder (``encoder.final_block.0.{weight,bias}``) or an untied
  linear one (``encoder.weight``), and ``dictionary._weights`` K×D (rows l2-normalized, times
  exp(``dictionary.multiplier``)), no decoder bias; or an ``overcomplete`` NMF (``D`` K×D). A state dict does not
  say the sparsity: pass ``method``/``top_k`` (default: topk with overcomplete's top_k = max(K // 10, 1)). A
  pickled module (``torch.save(model)``) is refused: it would run arbitrary code; save its state dict.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import PreimageError
from ..images import atomic_write_bytes

METHODS = ("topk", "batchtopk", "relu", "nmf")
FORMAT = "preimage-dictionary"
FORMAT_VERSION = 1


def to_rows(features: torch.Tensor, d: int) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """Features → (rows M×D, fold) where ``fold`` maps M×C rows back to the features' layout with C channels.

    features: N×D rows, N×D×h×w maps (channels on axis 1) or N×T×D tokens (channels last).
    """
    shape = tuple(features.shape)
    if features.ndim == 2 and shape[1] == d:
        return features, lambda r: r
    if features.ndim == 4 and shape[1] == d:
        n, _, h, w = shape
        rows = features.permute(0, 2, 3, 1).reshape(n * h * w, d)
        return rows, lambda r: r.reshape(n, h, w, r.shape[-1]).permute(0, 3, 1, 2)
    if features.ndim == 3 and shape[2] == d:
        n, t, _ = shape
        return features.reshape(n * t, d), lambda r: r.reshape(n, t, r.shape[-1])
    axis = {2: "N×D", 3: "N×T×D", 4: "N×D×h×w"}.get(features.ndim)
    if axis is None:
        raise PreimageError(f"features of shape {list(shape)} have no channel axis (need N×D, N×T×D or N×D×h×w)")
    got = shape[2] if features.ndim == 3 else shape[1]
    raise PreimageError(f"the dictionary has D={d} channels, the features have {got} (shape {list(shape)}, "
                        f"read as {axis})")


def nnls(x: torch.Tensor, atoms: torch.Tensor, z0: torch.Tensor, steps: int) -> torch.Tensor:
    """min_z≥0 ‖x − z·atoms‖² by FISTA from ``z0``. x: M×D, atoms: K×D, z0: M×K → M×K (differentiable)."""
    gram = atoms @ atoms.T
    # Step 1/L with L the Lipschitz constant of the gradient: the largest eigenvalue of the Gram matrix.
    lip = torch.linalg.eigvalsh(gram.detach().double()).max().clamp_min(1e-12).to(x.dtype)
    xa = x @ atoms.T
    z = y = z0.clamp_min(0)
    t = 1.0
    for _ in range(steps):
        z_next = (y - (y @ gram - xa) / lip).clamp_min(0)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = z_next + (t - 1) / t_next * (z_next - z)
        z, t = z_next, t_next
    return z


class Dictionary(nn.Module):
    """K concepts over a layer's D channels (see the module docstring for the maps and the files).

    method: ``topk`` | ``batchtopk`` | ``relu`` | ``nmf``; top_k: active concepts per row (topk); threshold: the
    activation threshold (batchtopk, at inference); encode_steps: NNLS steps (nmf); model, layer: what it was
    trained on (names, informative); figures: training figures (r2, l0, dead, seconds, ...); config: the
    training configuration. ``pre_shift`` (D, optional) is subtracted from rows before the encoder
    (SAELens files); ours fold it into the encoder bias.
    """

    def __init__(self, encoder_weight: torch.Tensor, encoder_bias: torch.Tensor | None,
                 decoder_weight: torch.Tensor, decoder_bias: torch.Tensor | None, *, method: str = "topk",
                 top_k: int | None = None, threshold: float | None = None, encode_steps: int = 200,
                 model: str | None = None, layer: str | None = None, figures: dict[str, Any] | None = None,
                 config: dict[str, Any] | None = None) -> None:
        super().__init__()
        k, d = encoder_weight.shape
        if method not in METHODS:
            raise PreimageError(f"method must be one of {', '.join(METHODS)}, got '{method}'", param="method")
        if tuple(decoder_weight.shape) != (d, k):
            raise PreimageError(f"decoder.weight is {list(decoder_weight.shape)}, expected [{d}, {k}] for "
                                f"encoder.weight {list(encoder_weight.shape)} (K×D)")
        eb = torch.zeros(k) if encoder_bias is None else encoder_bias.reshape(-1)
        db = torch.zeros(d) if decoder_bias is None else decoder_bias.reshape(-1)
        if eb.numel() != k or db.numel() != d:
            raise PreimageError(f"encoder.bias has {eb.numel()} values (need K={k}), decoder.bias {db.numel()} "
                                f"(need D={d})")
        if k <= 0 or d <= 0:
            raise PreimageError(f"a dictionary needs K ≥ 1 concepts and D ≥ 1 channels, got K={k}, D={d}", param="k")
        if method == "topk" and not (top_k and 1 <= top_k <= k):
            raise PreimageError(f"top_k must be between 1 and K={k}, got {top_k}", param="top_k")
        if method == "batchtopk" and threshold is None:
            raise PreimageError("a batchtopk dictionary needs its activation threshold")
        self.encoder = nn.Linear(d, k)
        self.decoder = nn.Linear(k, d)
        with torch.no_grad():
            self.encoder.weight.copy_(encoder_weight)
            self.encoder.bias.copy_(eb)
            self.decoder.weight.copy_(decoder_weight)
            self.decoder.bias.copy_(db)
        self.method = method
        self.top_k = top_k
        self.threshold = threshold
        self.encode_steps = encode_steps
        self.model = model
        self.layer = layer
        self.figures: dict[str, Any] = dict(figures or {})
        self.config: dict[str, Any] = dict(config or {})
        self.requires_grad_(False)

    @property
    def d(self) -> int:
        """Channels of the layer (D)."""
        return self.encoder.in_features

    @property
    def k(self) -> int:
        """Concepts (K)."""
        return self.encoder.out_features

    @property
    def atoms(self) -> torch.Tensor:
        """The concepts' directions in channel space, K×D (decoder columns)."""
        return self.decoder.weight.T

    def __repr__(self) -> str:
        extra = f", top_k={self.top_k}" if self.method == "topk" else ""
        where = f", layer={self.layer!r}" if self.layer else ""
        return f"Dictionary(method={self.method!r}, d={self.d}, k={self.k}{extra}{where})"

    # --- rows ------------------------------------------------------------------------------------------------

    def pre_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations of rows: M×D → M×K (linear in the rows)."""
        return self.encoder(rows.to(self.encoder.weight.dtype))

    def sparsify(self, pre: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Codes from pre-activations M×K (rows M×D: needed by nmf) → M×K, ≥ 0."""
        z = torch.relu(pre)
        if self.method == "topk":
            top = torch.topk(z, self.top_k, dim=-1)
            return torch.zeros_like(z).scatter(-1, top.indices, top.values)
        if self.method == "batchtopk":
            return z * (z >= self.threshold)
        if self.method == "nmf":
            return nnls(rows.to(z), self.atoms.to(z), z, self.encode_steps)
        return z

    def encode_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Codes of rows: M×D → M×K."""
        return self.sparsify(self.pre_rows(rows), rows)

    def decode_rows(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstruction of rows from codes: M×K → M×D."""
        return self.decoder(codes)

    # --- features in any layout ------------------------------------------------------------------------------

    def encode(self, features: torch.Tensor, pre: bool = False) -> torch.Tensor:
        """Codes with concepts on the channel axis: N×D → N×K, N×D×h×w → N×K×h×w, N×T×D → N×T×K.

        pre: the encoder's pre-activations (linear, before ReLU and sparsity) instead of the codes.
        """
        rows, fold = to_rows(features, self.d)
        p = self.pre_rows(rows)
        return fold(p if pre else self.sparsify(p, rows))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstructed features from codes: N×K → N×D, N×K×h×w → N×D×h×w, N×T×K → N×T×D."""
        rows, fold = to_rows(codes, self.k)
        return fold(self.decode_rows(rows))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The codes of features (``encode``)."""
        return self.encode(features)

    def digest(self) -> str:
        """12 hex digits naming the weights and the sparsity (what a Concept objective's spec and keys carry)."""
        h = hashlib.sha1(f"{self.method}:{self.top_k}:{self.threshold}:{self.encode_steps}".encode())
        for t in (self.encoder.weight, self.encoder.bias, self.decoder.weight, self.decoder.bias):
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:12]

    @property
    def concept_max(self) -> torch.Tensor | None:
        """K values: each concept's largest encoder pre-activation over the rows it was measured on (its natural
        maximum M_k, the Concept objective's normalizer), or None when not measured."""
        m = self.figures.get("concept_max")
        return None if m is None or len(m) != self.k else torch.tensor(m, dtype=torch.float64)

    def check_layer(self, d: int, where: str = "the layer") -> None:
        """A clear error unless this dictionary fits a layer of ``d`` channels."""
        if d != self.d:
            raise PreimageError(f"the dictionary expects D={self.d} channels (encoder.weight "
                                f"{list(self.encoder.weight.shape)}), {where} has {d}")

    # --- files -----------------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The JSON written beside the weights: format, method, shapes, training figures and configuration."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "method": self.method, "d": self.d, "k": self.k,
                "top_k": self.top_k, "threshold": self.threshold, "encode_steps": self.encode_steps,
                "model": self.model, "layer": self.layer, "figures": self.figures, "config": self.config}

    def to_bytes(self) -> tuple[bytes, bytes]:
        """(the .safetensors file, the .json beside it) as bytes; the safetensors metadata holds the JSON too."""
        from safetensors.torch import save as st_save

        meta = json.dumps(self.describe(), sort_keys=True)
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in self.state_dict().items()}
        return st_save(tensors, metadata={"preimage": meta}), (json.dumps(self.describe(), indent=2) + "\n").encode()

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.safetensors, the suffix is added if missing) and a .json beside it; returns the
        .safetensors path. Both are written atomically."""
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        weights, side = self.to_bytes()
        atomic_write_bytes(path, weights)
        atomic_write_bytes(path.with_suffix(".json"), side)
        return path


# --- loading ---------------------------------------------------------------------------------------------------


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """A file's tensors and our JSON configuration (None when the file is not ours)."""
    if not path.is_file():
        raise PreimageError(f"dictionary file not found: {path}", param="load")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
                meta = f.metadata() or {}
        except Exception as e:  # noqa: BLE001 - any unreadable file is a user error
            raise PreimageError(f"cannot read dictionary {path}: {e.__class__.__name__}") from None
        ours = meta.get("preimage")
        side = path.with_suffix(".json")
        if ours is None and side.is_file():
            ours = side.read_text()
        try:
            conf = json.loads(ours) if ours else None
        except json.JSONDecodeError:
            raise PreimageError(f"the configuration of dictionary {path} is not valid JSON") from None
        return tensors, conf if isinstance(conf, dict) and conf.get("format") == FORMAT else None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        if "Weights only load failed" in str(e) and "GLOBAL" in str(e):
            raise PreimageError(f"{path} holds a pickled module, which is not loaded (it could run any code): "
                                "save its state dict instead, torch.save(model.state_dict(), path)",
                                param="load") from None
        raise PreimageError(f"cannot read dictionary {path}: not a torch state dict or .safetensors file "
                            f"({e.__class__.__name__})", param="load") from None
    for key in ("state_dict", "model", "sae"):  # checkpoints that wrap the state dict
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PreimageError(f"{path} does not hold a state dict of tensors")
    return dict(obj), None


def _shapes(t: dict[str, torch.Tensor]) -> str:
    return ", ".join(f"{k} {list(v.shape)}" for k, v in sorted(t.items()))


def _from_tensors(t: dict[str, torch.Tensor], path: Path, method: str | None,
                  top_k: int | None) -> tuple[list[torch.Tensor | None], str, dict[str, Any]]:
    """(encoder W, encoder b, decoder W, decoder b), the method and extra options from a state dict's keys."""
    f = {k: v.float() for k, v in t.items()}
    if "encoder.weight" in f and "decoder.weight" in f:  # ours, and nn.Linear pairs
        return [f["encoder.weight"], f.get("encoder.bias"), f["decoder.weight"], f.get("decoder.bias")], \
            method or "topk", {}
    if "W_enc" in f and "W_dec" in f:  # SAELens / OpenAI: x ↦ (x − b_dec)·W_enc + b_enc
        we, wd = f["W_enc"].T, f["W_dec"].T
        b_dec = f.get("b_dec", torch.zeros(wd.shape[0]))
        be = f.get("b_enc", torch.zeros(we.shape[0]))
        if b_dec.numel() == we.shape[1] and be.numel() == we.shape[0]:
            be = be - we @ b_dec
        return [we, be, wd, b_dec], method or "relu", {}
    if "dictionary._weights" in f:  # overcomplete SAE
        atoms = f["dictionary._weights"]
        atoms = atoms / (atoms.norm(dim=1, keepdim=True) + 1e-8)  # its DictionaryLayer's l2 normalization
        atoms = atoms * torch.exp(f.get("dictionary.multiplier", torch.tensor(0.0)))
        if "encoder.final_block.0.weight" in f:
            we, be = f["encoder.final_block.0.weight"], f.get("encoder.final_block.0.bias")
        elif "encoder.weight" in f:  # overcomplete's untied linear encoder
            we, be = f["encoder.weight"], f.get("encoder.bias")
        elif not any(k.startswith("encoder.") for k in f):  # tied: the dictionary is the encoder
            we, be = atoms, None
        else:
            raise PreimageError(f"{path}: unsupported overcomplete encoder (only linear ones are read): {_shapes(t)}")
        k = atoms.shape[0]
        return [we, be, atoms.T, None], method or "topk", {"top_k": top_k or max(k // 10, 1)}
    if set(f) == {"D"}:  # overcomplete NMF
        atoms = f["D"]
        return [torch.linalg.pinv(atoms.T), None, atoms.T, None], method or "nmf", {}
    raise PreimageError(f"{path}: unknown dictionary layout ({_shapes(t)}); expected encoder.weight K×D, "
                        "encoder.bias K, decoder.weight D×K, decoder.bias D")


def load_dictionary(path: str | Path, d: int | None = None, *, method: str | None = None,
                    top_k: int | None = None, threshold: float | None = None) -> Dictionary:
    """Read a dictionary file (ours, a plain or SAELens state dict, an overcomplete model's state dict; see the
    module docstring). d: the layer's channels; a dictionary of another D is a clear one-line error naming
    both shapes. method/top_k/threshold: the sparsity of files that do not record it (ours record it)."""
    path = Path(path)
    tensors, conf = _read_tensors(path)
    if conf is not None:
        needed = {"encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"}
        if not needed <= set(tensors):
            raise PreimageError(f"{path}: missing tensors {sorted(needed - set(tensors))}")
        dic = Dictionary(tensors["encoder.weight"].float(), tensors["encoder.bias"].float(),
                         tensors["decoder.weight"].float(), tensors["decoder.bias"].float(),
                         method=conf.get("method", "topk"), top_k=conf.get("top_k"),
                         threshold=conf.get("threshold"), encode_steps=int(conf.get("encode_steps") or 200),
                         model=conf.get("model"), layer=conf.get("layer"), figures=conf.get("figures"),
                         config=conf.get("config"))
    else:
        (we, be, wd, bd), m, extra = _from_tensors(tensors, path, method, top_k)
        if we.ndim != 2 or wd.ndim != 2 or tuple(wd.shape) != tuple(we.shape[::-1]):
            raise PreimageError(f"{path}: encoder and decoder shapes do not fit (encoder K×D {list(we.shape)}, "
                                f"decoder D×K {list(wd.shape)})")
        k_ = we.shape[0]
        tk = top_k or extra.get("top_k") or (max(k_ // 10, 1) if m == "topk" else None)
        dic = Dictionary(we, be, wd, bd, method=m, top_k=tk, threshold=threshold,
                         config={"source": str(path)})
    if d is not None and d != dic.d:
        raise PreimageError(f"dictionary {path.name} does not fit the layer: its encoder is K×D = "
                            f"{dic.k}×{dic.d}, the layer has D={d} channels", param="load")
    return dic
