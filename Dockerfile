# openclaw-relay: one image for the ingress (`relay serve`) and the workers (`relay worker`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY relay ./relay
COPY presets ./presets
RUN pip install . && useradd --system --uid 10001 --home-dir /app relay
COPY transforms ./transforms
COPY worker.py relay.yaml ./

USER relay
EXPOSE 8080
CMD ["relay", "serve", "--host", "0.0.0.0"]
