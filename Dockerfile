# The application image: producer, stream job and trainer (Python 3.11, Java 17, pyspark,
# and the Spark connectors resolved, and the dead-letter handler built, at build time so
# containers start offline).
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless maven procps curl \
 && rm -rf /var/lib/apt/lists/*
ENV FINSTREAM_VENV=/opt/venv FINSTREAM_CACHE=/opt/finstream-cache FINSTREAM_LOCAL=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY producer ./producer
RUN python -m venv $FINSTREAM_VENV && $FINSTREAM_VENV/bin/pip install --no-cache-dir .
COPY . .
RUN stack/fetch.sh spark && stack/es-dead-letters.sh >/dev/null
ENV PATH=$FINSTREAM_VENV/bin:$PATH
