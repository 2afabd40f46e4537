"""``seekport kb …``: knowledge bases from the console, over the embedded store in the data
directory (no server needs to run)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from seekport.cli.common import ConfigOpt, DataDirOpt, load

kb_app = typer.Typer(no_args_is_help=True, help="Knowledge bases: ingest, search, evaluate.")


def _knowledge(settings: Any) -> Any:
    from seekport.api.app import build_knowledge

    parts = build_knowledge(settings)
    if parts is None:
        typer.echo(
            "error: knowledge bases need a local embedding model (a models[] entry with "
            "kind: embedding, backend: local); the default config has one",
            err=True,
        )
        raise typer.Exit(2)
    return parts


TenantOpt = Annotated[
    str, typer.Option("--tenant", help="The tenant the knowledge base belongs to.")
]
_SUFFIXES = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".csv", ".json"}


def _actor(tenant: str) -> Any:
    from seekport.knowledge.service import Actor

    return Actor(tenant_id=tenant, principal_id="cli", superadmin=True)  # the console


def _fail(exc: Exception) -> typer.Exit:
    message = getattr(exc, "message", str(exc))
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@kb_app.command("create")
def kb_create(
    name: Annotated[str, typer.Argument(help="Unique in the tenant.")],
    description: Annotated[str, typer.Option("--description")] = "",
    tenant: TenantOpt = "ten_default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a knowledge base (prints its id)."""
    from seekport.errors import SeekportError

    parts = _knowledge(load(config, data_dir=data_dir))
    try:
        kb = parts.bases.create(_actor(tenant), name, description=description)
    except SeekportError as exc:
        raise _fail(exc) from exc
    typer.echo(kb.id)


@kb_app.command("list")
def kb_list(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Knowledge bases, with their documents and chunks."""
    parts = _knowledge(load(config, data_dir=data_dir))
    rows = []
    for kb in parts.store.list_kbs(tenant):
        docs = parts.store.list_documents(kb.id)
        rows.append(
            {
                "id": kb.id,
                "tenant_id": kb.tenant_id,
                "name": kb.name,
                "documents": len(docs),
                "chunks": sum(d.chunks for d in docs),
                "embedding_model": kb.embedding_model,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    for r in rows:
        typer.echo(
            f"{r['id']}  {r['tenant_id']}  {r['name']}  {r['documents']} documents  "
            f"{r['chunks']} chunks"
        )


@kb_app.command("delete")
def kb_delete(
    kb: Annotated[str, typer.Argument(help="Its id, or its name in the tenant.")],
    tenant: TenantOpt = "ten_default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Delete a knowledge base with its documents and chunks."""
    from seekport.errors import SeekportError

    parts = _knowledge(load(config, data_dir=data_dir))
    try:
        parts.bases.delete(parts.bases.access(_actor(tenant), kb, "manage"))
    except SeekportError as exc:
        raise _fail(exc) from exc
    typer.echo("deleted")


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in _SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            typer.echo(f"error: {p}: no such file or folder", err=True)
            raise typer.Exit(1)
    return out


@kb_app.command("ingest")
def kb_ingest(
    kb: Annotated[str, typer.Argument(help="Its id, or its name in the tenant.")],
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (read recursively).")],
    tags: Annotated[str, typer.Option("--tags", help="Comma-separated document tags.")] = "",
    tenant: TenantOpt = "ten_default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Ingest local files into a knowledge base here and now (no server needed): unchanged
    files are skipped, a file that cannot be parsed is reported and the rest go on."""
    from rich.progress import Progress

    from seekport.errors import SeekportError

    settings = load(config, data_dir=data_dir)
    parts = _knowledge(settings)
    tag_list = [t.strip() for t in tags.split(",") if t.strip()]
    try:
        access = parts.bases.access(_actor(tenant), kb, "write")
    except SeekportError as exc:
        raise _fail(exc) from exc
    files = _files(paths)
    failed = skipped = 0
    with Progress(transient=False) as bar:
        task = bar.add_task("ingesting", total=len(files))
        for f in files:
            bar.update(task, description=f.name[:40])
            data = f.read_bytes()
            if len(data) > settings.knowledge.max_upload_bytes:
                typer.echo(f"{f}: larger than knowledge.max_upload_bytes; skipped", err=True)
                failed += 1
            else:
                doc, changed = parts.bases.upload(access, f.name, data, tag_list)
                if not changed:
                    skipped += 1
                elif parts.bases.ingest(doc.id) != "done":
                    failed += 1
                    found = parts.store.get_document(doc.id)
                    typer.echo(f"{f}: {found.error if found else 'failed'}", err=True)
            bar.advance(task)
    typer.echo(f"{len(files) - failed - skipped} ingested, {skipped} unchanged, {failed} failed")
    if failed:
        raise typer.Exit(1)


@kb_app.command("status")
def kb_status(
    kb: Annotated[str, typer.Argument(help="Its id, or its name in the tenant.")],
    tenant: TenantOpt = "ten_default",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Each document's ingestion status."""
    from seekport.errors import SeekportError

    parts = _knowledge(load(config, data_dir=data_dir))
    try:
        docs = parts.bases.documents(parts.bases.access(_actor(tenant), kb, "read"))
    except SeekportError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "id": d.id,
                        "filename": d.filename,
                        "status": d.status,
                        "chunks": d.chunks,
                        "error": d.error,
                    }
                    for d in docs
                ],
                ensure_ascii=False,
            )
        )
        return
    for d in docs:
        tail = f"  {d.error}" if d.error else ""
        typer.echo(f"{d.status:9}  {d.chunks:5} chunks  {d.filename}{tail}")


@kb_app.command("search")
def kb_search(
    kb: Annotated[str, typer.Argument(help="Its id, or its name in the tenant.")],
    query: Annotated[str, typer.Argument()],
    top_k: Annotated[int, typer.Option("--top-k", "-k")] = 5,
    mode: Annotated[str, typer.Option("--mode", help="hybrid, bm25 or dense.")] = "hybrid",
    tenant: TenantOpt = "ten_default",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Search a knowledge base; each hit says its rank in the lexical and dense legs."""
    from seekport.errors import SeekportError

    if mode not in ("hybrid", "bm25", "dense"):
        typer.echo("error: --mode is hybrid, bm25 or dense", err=True)
        raise typer.Exit(2)
    parts = _knowledge(load(config, data_dir=data_dir))
    try:
        access = parts.bases.access(_actor(tenant), kb, "read")
        hits = parts.bases.search(access, query, top_k=top_k, mode=mode)
    except SeekportError as exc:
        raise _fail(exc) from exc
    rows = [
        {
            "score": round(h.score, 6),
            "filename": h.chunk.filename,
            "position": h.chunk.position,
            "lexical_rank": h.lexical_rank,
            "dense_rank": h.dense_rank,
            "text": h.chunk.text,
        }
        for h in hits
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    for i, r in enumerate(rows, 1):
        why = f"bm25 #{r['lexical_rank'] or '-'}, dense #{r['dense_rank'] or '-'}"
        snippet = " ".join(str(r["text"]).split())[:160]
        typer.echo(f"{i}. {r['filename']} #{r['position']}  ({why})\n   {snippet}")


@kb_app.command("eval")
def kb_eval(
    dataset: Annotated[
        Path,
        typer.Option(
            "--dataset",
            help="A folder with corpus.jsonl and <split>/queries.jsonl, <split>/qrels.tsv.",
        ),
    ],
    split: Annotated[str, typer.Option("--split", help="test or dev.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Only the JSON line.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Ingest a labelled set through the real pipeline (once; kept in the data directory) and
    print nDCG@10, recall@10 and recall@100 of the lexical, dense and hybrid rankings as one
    JSON line."""
    from seekport.errors import SeekportError
    from seekport.knowledge.evaluation import Dataset, evaluate, ingest_dataset

    if split not in ("test", "dev"):
        typer.echo("error: --split is test or dev", err=True)
        raise typer.Exit(2)
    settings = load(config, data_dir=data_dir)
    parts = _knowledge(settings)

    def log(line: str) -> None:
        if not as_json:
            typer.echo(line, err=True)

    try:
        ds = Dataset.load(dataset, split)
        log(f"{ds.name}/{split}: {len(ds.corpus)} passages, {len(ds.queries)} queries")
        kb = ingest_dataset(ds, parts.bases, log)
        scores = evaluate(ds, parts.store, parts.retriever, kb)
    except SeekportError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    sys.stdout.write(json.dumps(scores) + "\n")
