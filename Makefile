# medbench: `make demo` runs the main job, `make test` runs the test suite.
# Both create .venv and install medbench into it when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision are pinned to the builds this project is tested with.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test lint clean

$(BIN)/medbench: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

install: $(BIN)/medbench

demo: install
	$(BIN)/medbench train experiment=breastmnist_resnet18 trainer.max_epochs=20

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmark

clean:
	rm -rf $(VENV) results/mlflow.db results/mlartifacts results/runs
