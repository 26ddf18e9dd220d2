FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py flowerconfig.py ./
COPY dispatcher ./dispatcher
COPY workers ./workers
RUN pip install --no-cache-dir . && useradd --create-home dispatcher \
    && mkdir -p /data/flower && chown dispatcher /data/flower
COPY campaigns ./campaigns
USER dispatcher
CMD ["dispatcher", "--help"]
