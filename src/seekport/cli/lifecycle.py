"""``seekport models`` on this machine's registry: ``pull``, ``add``, ``quantize``,
``measure``, ``show``, ``rm`` and ``list --local`` (``list`` alone asks the server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from seekport.cli.client import JsonOpt, _table, fail, models_app
from seekport.cli.common import ConfigOpt, DataDirOpt, load
from seekport.errors import SeekportError
from seekport.store.registry import Kind, ModelVersion, Registry

NameOpt = Annotated[str | None, typer.Option("--name", help="Register under this name.")]
VersionOpt = Annotated[
    str | None, typer.Option("--version", help="This version (default: the next number).")
]
MeasureOpt = Annotated[bool, typer.Option("--measure/--no-measure", help="Measure it afterwards.")]


def registry_of(config: Path | None, data_dir: Path | None) -> Registry:
    overrides: dict[str, Any] = {"data_dir": data_dir} if data_dir is not None else {}
    return Registry(load(config, **overrides).resolved_models_dir)


def _threads(value: str) -> list[int]:
    try:
        threads = [int(t) for t in value.split(",") if t.strip()]
    except ValueError as exc:
        raise fail("--threads: thread counts, comma-separated (e.g. 1,2)", 2) from exc
    if not threads or min(threads) < 1:
        raise fail("--threads: thread counts, comma-separated (e.g. 1,2)", 2)
    return threads


def _tps(figures: dict[str, Any], key: str) -> str:
    per = figures.get(key) or {}
    return " / ".join(f"{v:g}" for v in per.values()) if per else "-"


def figure_rows(entries: list[ModelVersion]) -> tuple[list[str], list[list[str]]]:
    header = [
        "model",
        "type",
        "MB",
        "load RSS MB",
        "prompt tok/s (threads)",
        "gen tok/s (threads)",
        "ppl en",
        "ppl zh",
        "tensors",
    ]
    rows = []
    for e in entries:
        f = e.figures
        threads = ",".join((f.get("prompt_tps") or {}).keys())
        mix = f.get("tensor_mix") or {}
        rows.append(
            [
                e.ref,
                e.quantization or "-",
                f"{f.get('file_mb', e.size / 2**20):.1f}",
                str(f.get("load_rss_mb", "-")),
                f"{_tps(f, 'prompt_tps')} ({threads})" if threads else "-",
                f"{_tps(f, 'gen_tps')} ({threads})" if threads else "-",
                str(f.get("ppl_en", "-")),
                str(f.get("ppl_zh", "-")),
                ", ".join(f"{k} ×{n}" for k, n in mix.items()) or "-",
            ]
        )
    return header, rows


def _print(entries: list[ModelVersion], json_out: bool) -> None:
    if json_out:
        from dataclasses import asdict

        typer.echo(json.dumps([asdict(e) for e in entries], ensure_ascii=False))
        return
    _table(*figure_rows(entries))


def _guard(fn: Any) -> Any:
    """Errors as one line (exit 1) instead of a traceback."""
    try:
        return fn()
    except SeekportError as exc:
        raise fail(exc.message) from exc


def list_local(config: Path | None, data_dir: Path | None, json_out: bool) -> None:
    reg = registry_of(config, data_dir)
    entries = _guard(reg.entries)
    if not entries and not json_out:
        typer.echo(f"no models in {reg.root}: `seekport models pull` or `seekport models add`")
        return
    _print(entries, json_out)


@models_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """One registered version: its file, SHA-256, source, parent and measured figures."""
    reg = registry_of(config, data_dir)
    entry = _guard(lambda: reg.get(ref))
    if json_out:
        _print([entry], True)
        return
    for label, value in (
        ("model", entry.ref),
        ("kind", entry.kind),
        ("file", str(reg.path_of(entry))),
        ("sha256", entry.sha256),
        ("size", f"{entry.size} bytes"),
        ("type", entry.quantization or "-"),
        ("source", entry.source),
        ("parent", entry.parent or "-"),
        ("added", entry.created_at),
        ("serve it", f"path: registry:{entry.ref}"),
    ):
        typer.echo(f"{label:>9}: {value}")
    if entry.figures.get("prompt_tps"):
        _table(*figure_rows([entry]))


@models_app.command("rm")
def rm(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION (NAME alone if it has one).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Delete a registered version and its file."""
    reg = registry_of(config, data_dir)
    entry = _guard(lambda: reg.remove(ref))
    typer.echo(f"removed {entry.ref}")


@models_app.command("add")
def add(
    file: Annotated[Path, typer.Argument(help="A GGUF file on this machine.")],
    name: Annotated[str, typer.Option("--name", help="Register under this name.")],
    version: VersionOpt = None,
    sha256: Annotated[
        str | None, typer.Option("--sha256", help="The expected SHA-256 (checked).")
    ] = None,
    base: Annotated[
        str | None,
        typer.Option("--base", help="For a LoRA adapter: the model it was trained on."),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Register a local file (copied into the registry) as a new version. A GGUF LoRA
    adapter (llama.cpp's convert_lora_to_gguf, or another seekport's finetune) is registered
    as an adapter of --base (`bundled` or NAME[@VERSION])."""
    from seekport.store.pull import gguf_file_type, gguf_kind

    reg = registry_of(config, data_dir)
    path = file.expanduser().resolve()
    kind: Kind = "adapter" if gguf_kind(path) == "adapter" else "model"
    if kind == "adapter" and base is None:
        raise fail(f"{path.name} is a LoRA adapter: name the model it was trained on (--base)")
    if kind == "model" and base is not None:
        raise fail(f"{path.name} is a model, not an adapter: --base applies to adapters")
    parent = base if base in (None, "bundled") else _guard(lambda: reg.get(base).ref)
    entry = _guard(
        lambda: reg.add(
            name,
            path,
            source=str(path),
            version=version,
            sha256=sha256,
            kind=kind,
            parent=parent,
            quantization=gguf_file_type(path) if kind == "model" else None,
        )
    )
    typer.echo(f"added {entry.ref} ({entry.size} bytes, sha256 {entry.sha256})")


@models_app.command("pull")
def pull(
    source: Annotated[
        str, typer.Argument(help="An http(s) URL, or hf:OWNER/REPO/FILE[@REVISION].")
    ],
    name: NameOpt = None,
    version: VersionOpt = None,
    sha256: Annotated[
        str | None, typer.Option("--sha256", help="The expected SHA-256 of the file.")
    ] = None,
    manifest: Annotated[
        str | None,
        typer.Option("--manifest", help="A sha256sum-style list (URL or file) holding it."),
    ] = None,
    mirror: Annotated[
        str | None, typer.Option("--mirror", help="HF-style mirror for hf: sources.")
    ] = None,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Register it without an expected hash.")
    ] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Download a model into the registry: resumable, SHA-256 verified, renamed into place
    only when whole. An interrupted pull resumes when run again."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TransferSpeedColumn,
    )

    from seekport.store.pull import pull as do_pull

    reg = registry_of(config, data_dir)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("downloading", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        entry = _guard(
            lambda: do_pull(
                reg,
                source,
                name=name,
                version=version,
                sha256=sha256,
                manifest=manifest,
                mirror=mirror,
                verify=not no_verify,
                progress=progress,
            )
        )
    typer.echo(f"pulled {entry.ref} ({entry.size} bytes, sha256 {entry.sha256} verified)")
    typer.echo(f"serve it with `path: registry:{entry.ref}` in a local model entry")


@models_app.command("quantize")
def quantize(
    ref: Annotated[str, typer.Argument(help="NAME[@VERSION] in the registry, or `bundled`.")],
    to: Annotated[str, typer.Option("--to", help="q8_0, f16, q4_0, q4_k_m, … (see --help)")],
    name: NameOpt = None,
    version: VersionOpt = None,
    measure: MeasureOpt = True,
    threads: Annotated[
        str, typer.Option("--threads", help="Thread counts to measure speed at.")
    ] = "1,2",
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Quantise a model in-process into a new registered version, then measure it (size,
    memory, speed, perplexity on English and Chinese text) beside the model it came from."""
    from seekport.gateway.lifecycle import ModelLifecycle

    counts = _threads(threads)
    life = ModelLifecycle(registry_of(config, data_dir))
    typer.echo(f"quantising {ref} to {to} …", err=True)
    entry = _guard(lambda: life.quantize(ref, to, name=name, version=version))
    if measure:
        typer.echo(f"measuring {entry.ref} …", err=True)
        _guard(lambda: life.measure(entry.ref, counts))
        entry = life.registry.get(entry.ref)
    _print([entry], json_out)


@models_app.command("merge")
def merge(
    adapter: Annotated[str, typer.Argument(help="An adapter's NAME[@VERSION] in the registry.")],
    to: Annotated[str, typer.Option("--to", help="f16 or q8_0 (smaller types erase it).")],
    scale: Annotated[
        float, typer.Option("--scale", min=0, max=4, help="The adapter's weight.")
    ] = 1.0,
    name: NameOpt = None,
    version: VersionOpt = None,
    measure: MeasureOpt = True,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Merge a LoRA adapter into its base model as a new registered model version (F16 or
    Q8_0), served without the adapter. Below Q8_0 the rounding erases what the adapter
    learned: serve the base with `adapter:` instead."""
    from seekport.gateway.lifecycle import ModelLifecycle

    life = ModelLifecycle(registry_of(config, data_dir))
    typer.echo(f"merging {adapter} into its base as {to} …", err=True)
    entry = _guard(lambda: life.merge(adapter, to, scale=scale, name=name, version=version))
    if measure:
        typer.echo(f"measuring {entry.ref} …", err=True)
        _guard(lambda: life.measure(entry.ref))
        entry = life.registry.get(entry.ref)
    _print([entry], json_out)


@models_app.command("measure")
def measure_cmd(
    ref: Annotated[str, typer.Argument(help="NAME[@VERSION] in the registry, or `bundled`.")],
    threads: Annotated[
        str, typer.Option("--threads", help="Thread counts to measure speed at.")
    ] = "1,2",
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Measure a version again (kept in the registry): size, load memory, prompt and
    generation speed, perplexity on the bundled English and Chinese texts."""
    from seekport.gateway.lifecycle import ModelLifecycle

    counts = _threads(threads)
    life = ModelLifecycle(registry_of(config, data_dir))
    figures = _guard(lambda: life.measure(ref, counts))
    if json_out:
        typer.echo(json.dumps(figures, ensure_ascii=False))
        return
    entry = (
        life.registry.get(ref)
        if ref != "bundled"
        else ModelVersion("bundled", "-", "model", "", "", 0, "bundled", "", figures=figures)
    )
    _table(*figure_rows([entry]))


def finetune(
    base: Annotated[
        str, typer.Option("--base", help="NAME[@VERSION] in the registry, or `bundled`.")
    ],
    data: Annotated[Path, typer.Option("--data", help="JSONL: instruction, input, output.")],
    name: NameOpt = None,
    rank: Annotated[int, typer.Option("--rank", min=1, max=256, help="LoRA rank.")] = 16,
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="LoRA alpha (default: 2 × rank).")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, max=100_000)] = 40,
    lr: Annotated[float, typer.Option("--lr", min=1e-7, max=1.0, help="Learning rate.")] = 1e-3,
    batch: Annotated[int, typer.Option("--batch", min=1, max=256)] = 8,
    scale: Annotated[
        float, typer.Option("--scale", min=0.0, max=4.0, help="Serving scale it records.")
    ] = 1.0,
    device: Annotated[
        str, typer.Option("--device", help="auto (a CUDA GPU when torch sees one), cpu, cuda.")
    ] = "auto",
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """LoRA fine-tune (extra [finetune]; the CPU, or a CUDA GPU when torch sees one): the
    answers of a JSONL file, checkpointed and resumable (run it again the same way),
    registered as an adapter with its training record and a held-out check before and
    after."""
    from rich.progress import BarColumn, Progress, TextColumn

    from seekport.gateway.lifecycle import (
        FinetuneUnavailable,
        ModelLifecycle,
        Step,
        TrainConfig,
    )

    if device not in ("auto", "cpu", "cuda"):  # before torch is imported (seconds)
        raise fail(f"--device {device}: choose auto, cpu or cuda")
    cfg = TrainConfig(rank=rank, alpha=alpha or 2.0 * rank, steps=steps, lr=lr, batch=batch)
    life = ModelLifecycle(registry_of(config, data_dir))
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        TextColumn("{task.completed}/{task.total} {task.fields[info]}"),
        transient=True,
    ) as bar:
        task = bar.add_task("training", total=steps, info="loading the model …")

        def progress(s: Step) -> None:
            info = f"loss {s.loss:.3f} · {s.s_per_step:.1f} s/step · ETA {s.eta_s:.0f} s"
            bar.update(task, completed=s.step, info=info)

        try:
            entry = _guard(
                lambda: life.finetune(
                    base, data, cfg, name=name, scale=scale, device=device, progress=progress
                )
            )
        except FinetuneUnavailable as exc:
            raise fail(str(exc), 2) from exc
    if json_out:
        _print([entry], True)
        return
    rec = entry.figures["training"]
    losses = rec["losses"]
    typer.echo(f"adapter {entry.ref} for {entry.parent} ({entry.size} bytes)")
    typer.echo(
        f"steps {len(losses)} · loss {losses[0]:.3f} → {losses[-1]:.3f} · {rec['seconds']} s "
        f"on {rec.get('device', 'cpu')}"
    )
    typer.echo(
        f"held-out loss {rec['heldout_loss_before']:.3f} → {rec['heldout_loss_after']:.3f} "
        f"({entry.figures['heldout_rows']} rows)"
    )
    for s in rec["samples"]:
        typer.echo(f"  {s['prompt'][:60]!r}")
        typer.echo(f"    before: {s['before'][:80]!r}\n    after:  {s['after'][:80]!r}")
    typer.echo(f"serve it: adapter: registry:{entry.ref} (adapter_scale: {scale})")
