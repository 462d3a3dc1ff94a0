# Set-up and the two entry points of the README: `make demo` and `make test`.
# Each target creates (or reuses) .venv, installs torch first and pinned (an open torch
# requirement would pull the CUDA build), then the package with its test extra.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test clean

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

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) outputs
