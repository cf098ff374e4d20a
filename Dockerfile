# One image for the api, ingest and control services; the command picks the part.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY packfleet packfleet
COPY schemas schemas
COPY ingest ingest
COPY control control
COPY api api
COPY device_sim device_sim
RUN pip install --no-cache-dir '.[redis]' && useradd --system packfleet
USER packfleet
ENV PACKFLEET_LOG_JSON=true
CMD ["packfleet", "api", "--host", "0.0.0.0"]
