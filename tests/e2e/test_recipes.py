"""The client recipes of docs/sdk.md, each run with the real package against the real server
(the session server's remote model in front of the suite's upstream): LangChain's
``langchain-openai`` and Simon Willison's ``llm`` CLI. (The ``openai`` and ``anthropic``
packages are used throughout the other tests.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.harness import Chaos, Server

MODEL = "deepseek-chat"


def test_langchain_openai(server: Server, fresh_chaos: Chaos) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        base_url=server.url + "/v1", api_key=server.key, model=MODEL, max_tokens=3, max_retries=0
    )
    answer = chat.invoke("hi")
    assert answer.content == "tok0 tok1 tok2"
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] == 3
    streamed = "".join(str(chunk.content) for chunk in chat.stream("hi"))
    assert streamed == "tok0 tok1 tok2"


def test_llm_cli(server: Server, fresh_chaos: Chaos, tmp_path: Path) -> None:
    home = tmp_path / "llm"
    home.mkdir()
    (home / "extra-openai-models.yaml").write_text(
        f"- model_id: seekport\n  model_name: {MODEL}\n  api_base: {server.url}/v1\n"
        "  api_key_name: seekport\n",
        encoding="utf-8",
    )
    (home / "keys.json").write_text(json.dumps({"seekport": server.key}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    env["LLM_USER_PATH"] = str(home)
    llm = Path(sys.executable).parent / "llm"
    out = subprocess.run(
        [str(llm), "-m", "seekport", "hello", "-o", "max_tokens", "4", "--no-log"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "tok0 tok1 tok2 tok3"
    sent = fresh_chaos.requests(1)[0]
    assert sent["model"] == MODEL and "hello" in sent["body"]
