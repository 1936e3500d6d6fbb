"""The V2A engine: picture + prompts -> 48 kHz stereo audio, for the daemon's worker.

One request passes through: decode (seek to the range, small frames) -> features (visual
streams, text token states) -> sampling (flow matching, Euler steps, guidance; windows for
long clips) -> decoding_audio (the codec's inverse, Griffin-Lim for the default) -> output
stage (resample to 48 kHz with soxr, provenance watermark (daemon.watermark, payload = hash of
model, weights and seed), loudness-normalise to -20 LUFS integrated (ITU-R BS.1770) under a
-1 dBFS true-peak ceiling, stereo). It implements `daemon.engine.Engine`.

Weights. By default the embedded `tiny` model (daemon/model/weights/tiny.safetensors with its
.json config). `V2AEngine(weights=...)` or the environment variable `V2A_WEIGHTS` point at
another file (safetensors or .pth) or a folder holding one (with its `<name>.json` config
beside it, or a config stored in the file). The front ends that exist produce tiny-sized
features (64-d picture streams at 8/25 fps, MiniLM 32 x 384 text, 160-d log-mel latents), so
only networks sized for them can run; loading a published MMAudio checkpoint succeeds at the
network level but stops here with `IncompatibleWeights`, naming the front ends it would need
(CLIP ViT-H-14, Synchformer, the CLIP text tower, the VAE + BigVGAN codec).

Batching. Requests of equal length, steps and guidance share one sampling (one forward per
step for the whole batch); each keeps the noise of its own seed, so a request gives the same
audio alone or in a batch (up to float rounding).
"""

from __future__ import annotations

import gc
import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyloudnorm
import torch

from daemon import watermark
from daemon.engine import (
    OUTPUT_RATE,
    Cancelled,
    CancelledFn,
    ClipRequest,
    EngineOutOfMemory,
    GeneratedAudio,
    ProgressFn,
)
from daemon.model.checkpoint import load_network
from daemon.model.codec import AudioCodec, MelCodec, ceiling_share, resample
from daemon.model.events import DETECTOR_FILE
from daemon.model.flow import (
    RENOISE,
    Guidance,
    autocast_for,
    euler_sample,
    guided_velocity,
    make_generator,
    precision_name,
    prepare_guidance,
    sound_bounds,
)
from daemon.model.guide import GUIDE_FILE, ClassGuide, ClassSteer, load_guide
from daemon.model.network import V2ANetwork
from daemon.model.text import MiniLMText, TextEncoder, conditioning_text, is_prompt
from daemon.model.visual import MotionFeatures, VisualEncoder, VisualFeatures, default_visual
from daemon.model.windows import (
    Window,
    WindowSettings,
    generate_latents,
    plan_clip_windows,
    window_conditions,
)

log = logging.getLogger(__name__)

UNFAMILIAR_SHARE = 0.01
"""A clip with more of its latent than this at the sampler's ceiling (`codec.SOUND_RANGE`) is
unfamiliar: logged, and marked so in its metadata, its WAV and the result the editor gets. On
held-out world clips hardly any cell gets there (none of six at 25 steps, under 0.4 % at 4); on
pictures the network runs away on (a panning texture, a box sliding over flat grey) a third to
a half of them do."""

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "tiny.safetensors"
WEIGHTS_ENV = "V2A_WEIGHTS"
DEVICE_ENV = "V2A_DEVICE"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")


class WeightsNotInstalled(RuntimeError):
    """No weights file where the engine looked; the message says where and what to do."""


class IncompatibleWeights(RuntimeError):
    """The weights are for a network whose inputs the installed front ends cannot produce."""


class DeviceUnavailable(RuntimeError):
    """The requested accelerator is not present."""


@dataclass(frozen=True)
class OutputSettings:
    """The output stage."""

    loudness_lufs: float = -20.0  # integrated loudness of every clip (SFX-friendly level)
    true_peak_dbfs: float = -1.0  # ceiling after loudness normalisation
    channels: int = 2


@dataclass(frozen=True)
class SamplingPlan:
    """What one batched sampling needs from each request."""

    latent_len: int
    clip: torch.Tensor  # (Nc, clip_dim)
    sync: torch.Tensor  # (Ns, sync_dim)
    text: torch.Tensor  # (Nt, text_dim)
    prompted: bool  # whether the text says anything (else it is the encoding of none)
    negative: torch.Tensor | None  # (Nt, text_dim) or None
    toward: torch.Tensor | None  # (classes,) the class guide's reading of the prompt, or None
    away: torch.Tensor | None  # (classes,) and of the negative prompt
    timings: dict = field(default_factory=dict)


def resolve_weights(weights: str | os.PathLike | None) -> Path:
    """The weights file to load: the argument, else $V2A_WEIGHTS, else the embedded tiny model.
    A folder must hold exactly one weights file."""
    chosen = weights if weights is not None else os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS
    path = Path(chosen).expanduser()
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
        # A network's file has its <name>.json config beside it (other weights, such as the
        # evaluation classifier kept with the embedded model, do not); then safetensors first.
        configured = [p for p in candidates if p.with_suffix(".json").is_file()]
        safetensors = [p for p in candidates if p.suffix == ".safetensors"]
        candidates = configured or safetensors or candidates
        if len(candidates) != 1:
            raise WeightsNotInstalled(
                f"the weights folder {path} holds {len(candidates)} weights files "
                f"({', '.join(p.name for p in candidates) or 'none'}); point {WEIGHTS_ENV} at one file"
            )
        path = candidates[0]
    if not path.is_file():
        if path == DEFAULT_WEIGHTS:
            raise WeightsNotInstalled(
                f"no model weights are installed: the embedded tiny model ({DEFAULT_WEIGHTS}) is "
                "missing from this build. Train it with `python -m daemon.model.train --config "
                f"tiny ...`, or set {WEIGHTS_ENV} (or the engine's `weights` argument) to a "
                "weights file (.safetensors or .pth, config beside it as <name>.json)"
            )
        raise WeightsNotInstalled(
            f"weights file {path} does not exist; check {WEIGHTS_ENV} or the `weights` argument"
        )
    return path


def pick_device(requested: str | None) -> torch.device:
    """'auto' (or None): $V2A_DEVICE when set, else CUDA, then Apple MPS, then CPU; any other
    value exactly what was asked for."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        requested = os.environ.get(DEVICE_ENV, "auto").lower() or "auto"
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("CUDA was requested but no CUDA GPU is usable; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailable("MPS was requested but Apple Metal is not available; use --device cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, MPS's "out of memory" and the CPU allocator's "can't
    allocate memory": all are helped by the worker's low-memory retry (shorter windows)."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in message or "can't allocate memory" in message
    )


class V2AEngine:
    """The default engine (see the module docstring)."""

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        *,
        device: str | None = None,
        visual: VisualEncoder | None = None,
        text: TextEncoder | None = None,
        codec: AudioCodec | None = None,
        output: OutputSettings | None = None,
        windows: WindowSettings | None = None,
    ) -> None:
        self._weights_arg = weights
        self._device_override = device
        # Without a given encoder, the weights pick theirs when they load (default_visual).
        self._visual_given = visual is not None
        self.visual = visual or MotionFeatures()
        self.text = text or MiniLMText()
        self.codec = codec or MelCodec()
        self.output = output or OutputSettings()
        self.windows = windows or WindowSettings()
        self._network: V2ANetwork | None = None
        self._guide: ClassGuide | None = None
        self._device: torch.device | None = None
        self._hash: tuple[tuple, str] | None = None

    # -- identity -----------------------------------------------------------------------------

    @property
    def weights_path(self) -> Path:
        return resolve_weights(self._weights_arg)

    @property
    def name(self) -> str:
        try:
            stem = self.weights_path.stem
        except WeightsNotInstalled:
            stem = DEFAULT_WEIGHTS.stem
        return f"v2a-{stem}"

    @property
    def weights_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of the weights file, and of the contact detector
        and the class guide beside it where they are ("" when no weights are installed)."""
        try:
            path = self.weights_path
        except WeightsNotInstalled:
            return ""
        files = [p for p in (path, path.parent / DETECTOR_FILE, path.parent / GUIDE_FILE)
                 if p.is_file()]
        key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
        if self._hash is None or self._hash[0] != key:
            digest = hashlib.sha256()
            for file in files:
                with file.open("rb") as f:
                    for block in iter(lambda f=f: f.read(1 << 20), b""):
                        digest.update(block)
            self._hash = (key, digest.hexdigest()[:16])
        return self._hash[1]

    # -- loading ------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._network is not None

    @property
    def device(self) -> str:
        return str(self._device) if self._network is not None else ""

    @property
    def network(self) -> V2ANetwork:
        if self._network is None:
            raise RuntimeError("the engine is not loaded; call load() first")
        return self._network

    def load(self, device: str = "auto") -> None:
        if self._network is not None:
            return
        path = self.weights_path
        target = pick_device(self._device_override or device)
        try:
            network = load_network(path, device=target)
        except Exception as exc:
            if _is_out_of_memory(exc):
                self.unload()
                raise EngineOutOfMemory(f"loading {path.name} on {target}: {exc}") from exc
            raise
        if not self._visual_given:
            try:
                self.visual = default_visual(network.config.sync_dim, path)
            except (FileNotFoundError, ValueError) as exc:  # missing, or from another build
                raise IncompatibleWeights(str(exc)) from exc
        self._check_front_ends(network, path)
        try:
            guide = load_guide(path, network.latent_mean, network.latent_std)
        except ValueError as exc:  # from another build
            raise IncompatibleWeights(str(exc)) from exc
        self._guide = None if guide is None else guide.to(target)
        network.requires_grad_(False)
        self.text.encode([""])  # loads the text encoder now rather than on the first job
        self._network, self._device = network.eval(), target
        log.info("loaded %s (%s) on %s, %s", path.name, self.weights_hash, target,
                 precision_name(target))

    def _check_front_ends(self, network: V2ANetwork, path: Path) -> None:
        c = network.config
        wanted = {
            "picture semantic features": (c.clip_dim, c.clip_rate, self.visual.clip_dim, self.visual.clip_rate),
            "picture sync features": (c.sync_dim, c.sync_rate, self.visual.sync_dim, self.visual.sync_rate),
            "text features": (c.text_dim, c.text_seq_len, self.text.dim, self.text.seq_len),
            "audio latents": (c.latent_dim, c.latent_rate, self.codec.latent_dim, self.codec.latent_rate),
        }
        wrong = [
            f"{what}: the network wants {a} x {b}, {front} gives {x} x {y}"
            for (what, (a, b, x, y)), front in zip(
                wanted.items(), (self.visual.name, self.visual.name, self.text.name, self.codec.name),
                strict=True,
            )
            if a != x or not math.isclose(float(b), float(y), rel_tol=1e-6)
        ]
        if wrong:
            raise IncompatibleWeights(
                f"{path.name} needs front ends this build does not have ({'; '.join(wrong)}). "
                "Only tiny-compatible front ends are installed (weight-free picture features, "
                "MiniLM text, log-mel latents); published MMAudio checkpoints need CLIP "
                "ViT-H-14, Synchformer, the CLIP text encoder and the VAE + BigVGAN codec, "
                "which cannot be downloaded here"
            )

    def unload(self) -> None:
        self._network = None
        self._guide = None
        self._device = None
        self.text.unload()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if torch.backends.mps.is_available():
            torch.mps.empty_cache()

    def memory(self) -> dict:
        device = self._device
        if device is not None and device.type == "cuda":
            return {
                "allocated": int(torch.cuda.memory_allocated(device)),
                "reserved": int(torch.cuda.memory_reserved(device)),
                "total": int(torch.cuda.get_device_properties(device).total_memory),
            }
        if device is not None and device.type == "mps":
            return {
                "allocated": int(torch.mps.current_allocated_memory()),
                "reserved": int(torch.mps.driver_allocated_memory()),
                "total": int(torch.mps.recommended_max_memory()),
            }
        # On the CPU the model's own tensors are what it holds; total is the machine's RAM.
        held = 0
        if self._network is not None:
            held = sum(t.numel() * t.element_size() for t in self._network.state_dict().values())
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # Windows has no sysconf
            total = 0
        return {"allocated": held, "reserved": held, "total": int(total)}

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self, request: ClipRequest, progress: ProgressFn, cancelled: CancelledFn
    ) -> GeneratedAudio:
        return self.generate_batch([request], progress, cancelled)[0]

    def generate_batch(
        self, requests: list[ClipRequest], progress: ProgressFn, cancelled: CancelledFn
    ) -> list[GeneratedAudio]:
        if not requests:
            return []
        self.load(self._device_override or "auto")
        try:
            return self._generate_all(list(requests), progress, cancelled)
        except Exception as exc:
            if _is_out_of_memory(exc):
                if self._device is not None and self._device.type == "cuda":
                    torch.cuda.empty_cache()
                raise EngineOutOfMemory(f"out of accelerator memory on {self.device}: {exc}") from exc
            raise

    def _generate_all(
        self, requests: list[ClipRequest], progress: ProgressFn, cancelled: CancelledFn
    ) -> list[GeneratedAudio]:
        network = self.network
        plans = []
        for index, request in enumerate(requests):
            _check(cancelled)
            plans.append(self._prepare(request, progress, index, len(requests)))

        # Batch together what can share a sampling: equal length, steps and guidance, short
        # enough for one window; low-memory requests go one at a time.
        single_limit = self.windows.single_limit(network.config)
        groups: dict[tuple, list[int]] = {}
        for i, (request, plan) in enumerate(zip(requests, plans, strict=True)):
            batchable = not request.low_memory and plan.latent_len <= single_limit
            key = (plan.latent_len, request.steps, request.cfg) if batchable else ("alone", i)
            groups.setdefault(key, []).append(i)

        total_steps = sum(self._steps_for(requests[g[0]], plans[g[0]]) for g in groups.values())
        done_steps = 0
        latents: dict[int, torch.Tensor] = {}
        for key, members in groups.items():
            started = time.perf_counter()

            def report(step: int, _total: int, offset=done_steps) -> None:
                progress("sampling", offset + step, total_steps)

            if key[0] == "alone":
                i = members[0]
                latents[i] = self._sample_windows(requests[i], plans[i], report, cancelled)[0]
            else:
                batch = self._sample_batch([requests[i] for i in members], [plans[i] for i in members],
                                           report, cancelled)
                for i, item in zip(members, batch, strict=True):
                    latents[i] = item
            elapsed = time.perf_counter() - started
            for i in members:
                plans[i].timings["sampling_s"] = elapsed / len(members)
            done_steps += self._steps_for(requests[members[0]], plans[members[0]])

        # Decode equal lengths together (the codec is vectorised over the batch).
        _check(cancelled)
        results: list[GeneratedAudio | None] = [None] * len(requests)
        by_length: dict[int, list[int]] = {}
        for i, plan in enumerate(plans):
            by_length.setdefault(plan.latent_len, []).append(i)
        decoded_count = 0
        for members in by_length.values():
            progress("decoding_audio", decoded_count, len(requests))
            started = time.perf_counter()
            stacked = torch.stack([latents[i] for i in members]).float()
            if stacked.device.type != "cuda":
                # Griffin-Lim's STFTs run on CUDA or the CPU (MPS lacks parts of istft).
                stacked = stacked.cpu()
            waveforms = self.codec.decode(stacked).cpu().numpy()  # (B, N * samples_per_token)
            # Cells held at the sampler's ceiling are louder than any sound can be: the network
            # ran away (a picture unlike those it learnt from), and the clip says so.
            overloud = ceiling_share(stacked).tolist()
            elapsed = time.perf_counter() - started
            for i, waveform, share in zip(members, waveforms, overloud, strict=True):
                plans[i].timings["decoding_audio_s"] = elapsed / len(members)
                results[i] = self._finish(requests[i], plans[i], waveform, network, share)
            decoded_count += len(members)
        progress("decoding_audio", len(requests), len(requests))
        return results  # type: ignore[return-value]

    def _window_settings(self, request: ClipRequest) -> WindowSettings:
        if not request.low_memory:
            return self.windows
        return self.windows.for_low_memory(self.network.config)

    def _steps_for(self, request: ClipRequest, plan: SamplingPlan) -> int:
        """Sampler steps the request will take (steps x windows), planned the way
        `windows.generate_latents` plans them, so progress totals are exact."""
        settings = self._window_settings(request)
        if plan.latent_len <= settings.single_limit(self.network.config):
            return request.steps
        return request.steps * len(plan_clip_windows(self.network, plan.latent_len, settings))

    def _prepare(self, request: ClipRequest, progress: ProgressFn, index: int, count: int) -> SamplingPlan:
        """Decode the picture and compute every condition of one request."""
        if request.steps < 1:
            raise ValueError(f"steps must be at least 1, got {request.steps}")
        c = self.network.config
        progress("decode", index, count)
        started = time.perf_counter()
        # The visual encoder decodes and measures in one pass over the small frames.
        picture: VisualFeatures = self.visual.encode_segments(request.segments)
        visual_s = time.perf_counter() - started
        progress("features", index, count)
        started = time.perf_counter()
        text, prompted, negative = conditioning_text(
            self.text, [request.prompt], [request.negative_prompt], c.reads_negation)
        latent_len, _, _ = c.seq_lens_for(request.duration)
        toward = away = None
        if self._guide is not None:
            toward, away = self._guide.names(self.text, [request.prompt, request.negative_prompt])
        return SamplingPlan(
            latent_len=latent_len,
            clip=picture.clip,
            sync=picture.sync,
            text=text[0],
            prompted=bool(prompted[0]),
            negative=negative[0] if is_prompt(request.negative_prompt) else None,
            toward=toward,
            away=away,
            timings={"decode_and_picture_features_s": visual_s,
                     "text_features_s": time.perf_counter() - started},
        )

    def _sample_windows(self, request: ClipRequest, plan: SamplingPlan, report, cancelled) -> torch.Tensor:
        """One request of any length through the network's windowed generation."""
        device = self._device
        negative = None if plan.negative is None else plan.negative[None].to(device)
        return generate_latents(
            self.network, plan.clip[None].to(device), plan.sync[None].to(device),
            plan.text[None].to(device), plan.latent_len, negative_text_f=negative,
            steps=request.steps, cfg=request.cfg, seed=request.seed,
            settings=self._window_settings(request), prompted=plan.prompted,
            steer=self._steer([plan]), progress=report, cancelled=cancelled,
        )

    def _steer(self, plans: list[SamplingPlan]) -> ClassSteer | None:
        """The class guide's steer for these items (None without a guide or anything named)."""
        if self._guide is None:
            return None
        device = self._device
        return ClassSteer.of(self._guide, torch.stack([p.toward for p in plans]).to(device),
                             torch.stack([p.away for p in plans]).to(device))

    @torch.inference_mode()
    def _sample_batch(self, requests: list[ClipRequest], plans: list[SamplingPlan], report,
                      cancelled) -> torch.Tensor:
        """Requests of one length, steps and guidance in one sampling; (B, N, latent_dim)."""
        network, device = self.network, self._device
        n = plans[0].latent_len
        whole = Window(0, n, 0)
        clip, sync, clip_offset = window_conditions(
            network, torch.stack([p.clip for p in plans]).to(device),
            torch.stack([p.sync for p in plans]).to(device), whole,
        )
        text = torch.stack([p.text for p in plans]).to(device)
        cfg, steps = requests[0].cfg, requests[0].steps
        # Each item's noise (the start, then each step's fresh share) comes from its own seed,
        # exactly as if it were sampled alone.
        generators = [make_generator(device, r.seed) for r in requests]

        def fresh_noise() -> torch.Tensor:
            return torch.cat([torch.randn((1, n, network.config.latent_dim), generator=g,
                                          device=device, dtype=torch.float32)
                              for g in generators])

        noise = fresh_noise()
        # Items without a negative prompt carry the empty text in its rows, unused.
        negative = torch.stack([
            p.negative.to(device) if p.negative is not None else network.empty_string_feat
            for p in plans
        ])
        guidance = Guidance.scaled(cfg)
        with autocast_for(device):
            branches = prepare_guidance(
                network, clip, sync, text, n, guidance, clip_offset=clip_offset,
                negative_text_f=negative,
                prompted=torch.tensor([p.prompted for p in plans], device=device),
                negated=torch.tensor([p.negative is not None for p in plans], device=device))
        velocity = guided_velocity(network, branches, guidance, self._steer(plans))
        x = euler_sample(velocity, noise, steps, bounds=sound_bounds(network), renoise=RENOISE,
                         fresh_noise=fresh_noise, progress=report, cancelled=cancelled)
        return network.unnormalize(x)

    # -- output stage -------------------------------------------------------------------------

    def _finish(self, request: ClipRequest, plan: SamplingPlan, waveform: np.ndarray,
                network: V2ANetwork, overloud: float) -> GeneratedAudio:
        """Codec-rate mono waveform -> exactly request.num_samples at 48 kHz, levelled, marked,
        stereo. `overloud` is the share of its latent held at the sampler's ceiling."""
        unfamiliar = overloud > UNFAMILIAR_SHARE
        if unfamiliar:
            log.warning(
                "%.0f %% of the sound generated for %s is held at the ceiling of what a sound can "
                "be: the picture is unlike those the model was trained on, and this sound is "
                "not to be trusted", 100 * overloud, request.segments[0].media)
        started = time.perf_counter()
        audio = resample(waveform.astype(np.float32), self.codec.sample_rate, OUTPUT_RATE)
        audio = _fit_length(audio, request.num_samples)
        # Marked before levelling: the mark is a pattern of relative gains that a global gain
        # keeps, while the peak ceiling must hold for the audio that leaves.
        payload = watermark_payload(self.name, self.weights_hash, request.seed)
        audio = watermark.embed(audio[None], OUTPUT_RATE, payload)[0]
        audio, loudness = normalise_loudness(audio, OUTPUT_RATE, self.output)
        samples = np.repeat(audio[None], self.output.channels, axis=0)
        plan.timings["output_s"] = time.perf_counter() - started
        return GeneratedAudio(
            samples=np.clip(samples, -1.0, 1.0).astype(np.float32),
            sample_rate=OUTPUT_RATE,
            metadata={
                "model": self.name,
                "weights": self.weights_hash,
                "seed": request.seed,
                "steps": request.steps,
                "cfg": request.cfg,
                "prompt": request.prompt,
                "negative_prompt": request.negative_prompt,
                "device": self.device,
                "precision": precision_name(self._device),
                "loudness_lufs": loudness,
                "overloud_share": overloud,
                "unfamiliar": unfamiliar,
                "watermark": payload.hex(),
                "timings": dict(plan.timings),
            },
        )


def _check(cancelled: CancelledFn) -> None:
    if cancelled():
        raise Cancelled("generation cancelled")


def _fit_length(audio: np.ndarray, count: int) -> np.ndarray:
    if audio.shape[-1] >= count:
        return audio[..., :count]
    return np.pad(audio, (0, count - audio.shape[-1]))


def watermark_payload(model: str, weights_hash: str, seed: int) -> bytes:
    """The 8 bytes every clip is marked with: a hash of model, weights and seed (short
    payloads decode from shorter audio; `daemon.watermark.detect` reads them back)."""
    return hashlib.sha256(f"{model}|{weights_hash}|{seed}".encode()).digest()[:8]


def true_peak(audio: np.ndarray, rate: int) -> float:
    """Peak of the 4x oversampled signal (ITU-R BS.1770 true peak), linear."""
    if audio.size == 0:
        return 0.0
    oversampled = resample(audio, rate, 4 * rate)
    return float(max(np.abs(oversampled).max(), np.abs(audio).max()))


def normalise_loudness(audio: np.ndarray, rate: int, settings: OutputSettings) -> tuple[np.ndarray, float | None]:
    """Gain `audio` (mono) to the target integrated loudness, then down to the true-peak
    ceiling if it would exceed it. Returns the audio and its loudness after (None when it
    cannot be measured: silence, or shorter than one 400 ms BS.1770 block, which only gets the
    peak ceiling)."""
    audio = audio.astype(np.float64)
    loudness = None
    if audio.shape[-1] >= int(0.4 * rate) and np.abs(audio).max() > 1e-6:
        measured = pyloudnorm.Meter(rate).integrated_loudness(audio)
        if math.isfinite(measured):
            audio = audio * 10.0 ** ((settings.loudness_lufs - measured) / 20.0)
            loudness = settings.loudness_lufs
    ceiling = 10.0 ** (settings.true_peak_dbfs / 20.0)
    peak = true_peak(audio.astype(np.float32), rate)
    if peak > ceiling:
        gain = ceiling / peak
        audio = audio * gain
        if loudness is not None:
            loudness += 20.0 * math.log10(gain)
    return audio.astype(np.float32), loudness
