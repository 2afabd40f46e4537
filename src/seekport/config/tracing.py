"""The ``tracing:`` section: OpenTelemetry spans of each request, off by default."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class TracingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="Export a trace of each API request.")
    otlp_endpoint: str = Field(
        default="http://127.0.0.1:4318/v1/traces",
        description="Where spans go: an OTLP/HTTP traces endpoint (an OpenTelemetry "
        "Collector, Jaeger, Tempo).",
    )
    service_name: str = Field(default="seekport", description="The traces' service.name.")
    sample_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        default=1.0, description="The share of requests traced (parent-based otherwise)."
    )
