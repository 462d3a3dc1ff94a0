# Set-up and the entry points of the README: `make demo`, `make test` and `make notebook`.
# Each target creates (or reuses) .venv, installs torch first and pinned (an open torch
# requirement would pull the CUDA build), then the package with its test extra.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test notebook clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

DEMO := outputs/demo
SAMPLE := $(DEMO)/sample

# Segments a freshly generated 96x192x192 sample volume with the bundled model, then writes the
# labels (NIfTI, TIFF), a figure and the adapted Rand error against the sample's ground truth.
# Rerunning it replaces its own earlier outputs in outputs/demo.
demo: $(STAMP)
	$(PY) -c "from spoco_monai.data import write_synthetic_dataset; write_synthetic_dataset('$(SAMPLE)', n_volumes=1, shape=(96, 192, 192), seed=2026, validation_fraction=0.0)"
	$(PY) -m monai.bundle run --config_file "['bundle/configs/common.json','bundle/configs/inference.json']" --input_image $(SAMPLE)/images/synthetic_000.nii.gz --output_dir $(DEMO) --overwrite True
	$(PY) -m spoco_monai.visualize --image $(SAMPLE)/images/synthetic_000.nii.gz --labels $(DEMO)/synthetic_000_instances.nii.gz --ground-truth $(SAMPLE)/labels/synthetic_000.nii.gz --output-dir $(DEMO) --baseline membranes --element-size 2 1 1
	@echo "The commands are installed in $(VENV): run 'source $(VENV)/bin/activate' to call spoco-monai and python -m monai.bundle as the README does, or call $(VENV)/bin/spoco-monai and $(VENV)/bin/python directly."

test: $(STAMP)
	$(PY) -m pytest -q tests

NOTEBOOK_STAMP := $(VENV)/.notebook-installed

$(NOTEBOOK_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[notebook]"
	touch $(NOTEBOOK_STAMP)

# Opens the quick-start notebook in JupyterLab, installed into .venv (the `notebook` extra) the first time.
notebook: $(NOTEBOOK_STAMP)
	$(VENV)/bin/jupyter lab notebooks/quickstart.ipynb

clean:
	rm -rf $(VENV) outputs
