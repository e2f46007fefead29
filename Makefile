# Two entry points (see README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch; on a machine with an NVIDIA GPU you may prefer: make TORCH_SPEC="torch" demo
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup setup-test demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Every later install is constrained to the torch chosen here, so that no dependency (timm -> torchvision)
# swaps it for a multi-GB CUDA build. torchvision gets installed for timm's metadata but is never imported.
$(VENV)/.torch: $(BIN)/python
	echo "$(TORCH_SPEC)" > $(VENV)/torch-constraint.txt
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/torch-constraint.txt
	touch $@

$(VENV)/.umamba: $(VENV)/.torch umamba/pyproject.toml
	$(BIN)/python -m pip install -q -c $(VENV)/torch-constraint.txt -e ./umamba
	touch $@

$(VENV)/.umamba-test: $(VENV)/.umamba
	$(BIN)/python -m pip install -q -c $(VENV)/torch-constraint.txt -e "./umamba[test]"
	touch $@

setup: $(VENV)/.umamba
setup-test: $(VENV)/.umamba-test

demo: setup
	$(BIN)/umamba demo

test: setup-test
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo_output
