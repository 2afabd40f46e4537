"""The model registry end to end with the real CLI and the real bundled model: quantise it to
Q8_0 and F16 (measured), serve each version by ``path: registry:NAME@VERSION`` and call it with
the official ``openai`` client; pull a registered file back over HTTP through a server that
drops the connection; refuse a config naming a version that does not exist."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fileserver import Faults, FileServer, serve_files
from tests.harness import SEEKPORT, Server, openai_client, run_cli, run_server, write_config

pytestmark = pytest.mark.slow
NAME = "smollm2-135m-instruct"


def local(name: str, ref: str) -> dict[str, object]:
    return {
        "name": name,
        "backend": "local",
        "path": f"registry:{ref}",
        "context_length": 1024,
        "max_num_seqs": 2,
    }


def test_quantised_versions_are_measured_registered_and_served(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    q8 = run_cli(cfg, "models", "quantize", "bundled", "--to", "q8_0", "--threads", "2")
    row = q8.stdout.strip().splitlines()[-1].split("\t")
    assert row[0] == f"{NAME}@q8_0" and row[1] == "Q8_0"
    assert row[8] == "Q8_0 ×211, F32 ×61"  # the real tensor mix, read from the file
    run_cli(cfg, "models", "quantize", "bundled", "--to", "f16", "--no-measure")
    listed = json.loads(run_cli(cfg, "models", "list", "--local", "--json").stdout)
    by_ref = {e["name"] + "@" + e["version"]: e for e in listed}
    assert set(by_ref) == {f"{NAME}@q8_0", f"{NAME}@f16"}
    figures = by_ref[f"{NAME}@q8_0"]["figures"]
    assert figures["gen_tps"]["2"] > 0 and 1 < figures["ppl_en"] < 100 and figures["ppl_zh"] > 1
    assert by_ref[f"{NAME}@f16"]["size"] > by_ref[f"{NAME}@q8_0"]["size"]
    assert by_ref[f"{NAME}@f16"]["parent"] == "bundled"

    serve = write_config(tmp_path, [local("sm-q8", f"{NAME}@q8_0"), local("sm-f16", f"{NAME}@f16")])
    with run_server(serve) as server:
        # ready only after a warm-up generation: each engine has run tokens before any call
        scraped = httpx.get(
            server.url + "/metrics", headers={"Authorization": f"Bearer {server.key}"}
        )
        for model in ("sm-q8", "sm-f16"):
            line = f'seekport_engine_tokens_total{{model="{model}",phase="decode"}}'
            assert any(
                ln.startswith(line) and float(ln.split()[-1]) >= 1
                for ln in scraped.text.splitlines()
            ), model
        client = openai_client(server.url + "/v1", server.key)
        cards = {m.id: m for m in client.models.list().data}
        assert cards["sm-q8"].version == f"{NAME}@q8_0"  # type: ignore[attr-defined]
        assert cards["sm-f16"].version == f"{NAME}@f16"  # type: ignore[attr-defined]
        for model in ("sm-q8", "sm-f16"):
            out = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                max_tokens=12,
                temperature=0,
            )
            assert out.choices[0].message.content and out.model == model


def test_a_registered_file_pulls_back_through_a_dropping_server(tmp_path: Path) -> None:
    """The CLI's pull: resumed across dropped connections, verified, registered."""
    cfg = write_config(tmp_path)
    src = tmp_path / "tiny.gguf"
    src.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    added = run_cli(cfg, "models", "add", str(src), "--name", "tiny")
    assert digest in added.stdout
    fs = FileServer({"tiny.gguf": src.read_bytes()}, Faults(drop_after=200_000, drops=2))
    with serve_files(fs):
        pulled = run_cli(
            cfg, "models", "pull", fs.url("tiny.gguf"), "--name", "tiny", "--sha256", digest
        )
        assert "tiny@2" in pulled.stdout and "verified" in pulled.stdout
        assert [r for _, r in fs.hits] == [None, "bytes=200000-", "bytes=400000-"]
        fs.faults.corrupt_at = 10
        bad = run_cli(cfg, "models", "pull", fs.url("tiny.gguf"), "--sha256", digest, check=False)
    assert bad.returncode == 1 and "SHA-256 mismatch" in bad.stderr
    assert "Traceback" not in bad.stderr
    shown = json.loads(run_cli(cfg, "models", "show", "tiny@2", "--json").stdout)[0]
    assert shown["sha256"] == digest and shown["source"] == fs.url("tiny.gguf")
    run_cli(cfg, "models", "rm", "tiny@1")
    listed = json.loads(run_cli(cfg, "models", "list", "--local", "--json").stdout)
    assert [e["version"] for e in listed] == ["2"]


def test_a_config_naming_a_missing_version_fails_before_serving(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [local("m", f"{NAME}@nope")])
    done = subprocess.run(
        [*SEEKPORT, "serve", "--config", str(cfg), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"no model '{NAME}' in the registry" in done.stderr


async def _swap_under_streams(server: Server) -> tuple[dict[str, object], list[float], float]:
    """8 streams; once each has its first chunk, switch the version; read them all to the
    end. (the switch's answer, each stream's end time, the switch's end time)"""
    auth = {"Authorization": f"Bearer {server.key}"}
    async with openai.AsyncOpenAI(
        base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=300
    ) as ac:
        streams = [
            await ac.chat.completions.create(
                model="sm",
                messages=[{"role": "user", "content": f"Count upwards from {i}"}],
                max_tokens=160,
                temperature=0,
                logit_bias={"2": -100},  # no early end: every stream runs its 160 tokens
                stream=True,
            )
            for i in range(8)
        ]
        firsts = [await anext(aiter(s)) for s in streams]
        assert all(f.choices for f in firsts)

        async def drain(stream: Any) -> float:
            finish = None
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].finish_reason:
                    finish = chunk.choices[0].finish_reason
            assert finish == "length"
            return time.monotonic()

        readers = [asyncio.create_task(drain(s)) for s in streams]
        async with httpx.AsyncClient(timeout=120) as http:
            r = await http.post(
                server.url + "/admin/models/sm/use",
                json={"version": f"{NAME}@f16"},
                headers=auth,
            )
        swapped_at = time.monotonic()
        assert r.status_code == 200, r.text
        ends = await asyncio.gather(*readers)  # raises if any stream failed
    return r.json(), list(ends), swapped_at


def test_use_switches_versions_under_live_streams_and_rolls_back(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    run_cli(cfg, "models", "quantize", "bundled", "--to", "q8_0", "--no-measure")
    run_cli(cfg, "models", "quantize", "bundled", "--to", "f16", "--no-measure")
    serve = write_config(tmp_path, [{**local("sm", f"{NAME}@q8_0"), "max_num_seqs": 8}])
    with run_server(serve) as server:
        done, ends, swapped_at = asyncio.run(_swap_under_streams(server))
        assert done["serving"] == f"registry:{NAME}@f16"
        assert done["previous"] == f"registry:{NAME}@q8_0"
        assert sum(end > swapped_at for end in ends) >= 4  # the switch happened mid-stream
        client = openai_client(server.url + "/v1", server.key)
        assert client.models.retrieve("sm").version == f"{NAME}@f16"  # type: ignore[attr-defined]
        out = client.chat.completions.create(
            model="sm", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert out.choices[0].message.content is not None

        use = [*SEEKPORT, "models", "use", "sm", f"{NAME}@nope"]
        env = {"SEEKPORT_BASE_URL": server.url, "SEEKPORT_API_KEY": server.key}
        bad = subprocess.run(
            use, capture_output=True, text=True, env={**server.env, **env}, check=False
        )
        assert bad.returncode == 1 and "no version 'nope'" in bad.stderr
        auth = {"Authorization": f"Bearer {server.key}"}
        in_use = httpx.delete(
            f"{server.url}/admin/models/registry/{NAME}@f16", headers=auth, timeout=30
        )
        assert in_use.status_code == 400 and in_use.json()["error"]["code"] == "model_in_use"

        back = subprocess.run(
            [*SEEKPORT, "models", "rollback", "sm"],
            capture_output=True,
            text=True,
            env={**server.env, **env},
            check=False,
        )
        assert back.returncode == 0, back.stderr
        assert f"serving registry:{NAME}@q8_0" in back.stdout
        assert client.models.retrieve("sm").version == f"{NAME}@q8_0"  # type: ignore[attr-defined]
        again = httpx.post(f"{server.url}/admin/models/sm/rollback", headers=auth, timeout=30)
        assert again.status_code == 400 and "no earlier version" in again.text
        audit = httpx.get(f"{server.url}/admin/audit", headers=auth, timeout=30).json()
        actions = [row["action"] for row in audit["data"]]
        assert "model.use" in actions and "model.rollback" in actions
