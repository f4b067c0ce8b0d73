# canopycli: the CLI and the relay. The state folder (journal, queue, locks) is a volume.
FROM python:3.12-slim
RUN useradd --system --create-home --uid 10001 canopycli
WORKDIR /app
COPY pyproject.toml README.md ./
COPY canopycli ./canopycli
RUN pip install --no-cache-dir . && mkdir /state && chown canopycli /state
USER canopycli
ENV CANOPYCLI_STATE_DIR=/state
VOLUME ["/state"]
EXPOSE 8787
STOPSIGNAL SIGTERM
ENTRYPOINT ["canopycli"]
CMD ["relay", "--listen", "0.0.0.0:8787", "--insecure-listen"]
