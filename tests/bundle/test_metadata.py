"""``metadata.json`` against the fields MONAI's model-zoo schema requires, checked offline, for every shipped model."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import jsonschema
import pytest
from bundle_workflow import CONFIGS
from monai.bundle import ConfigParser

METADATA = json.loads((CONFIGS / "metadata.json").read_text())

# The parts of the model-zoo meta schema (the "schema" URL of metadata.json) this bundle fills, written out here
# because MONAI's verify_metadata downloads the schema first.
TENSOR = {
    "type": "object",
    "required": ["type", "format", "modality", "num_channels", "spatial_shape", "dtype", "value_range",
                 "is_patch_data", "channel_def"],
    "properties": {
        "type": {"type": "string"},
        "format": {"type": "string"},
        "modality": {"type": "string"},
        "num_channels": {"type": "integer", "minimum": 1},
        "spatial_shape": {"type": "array", "items": {"type": ["integer", "string"]}, "minItems": 2, "maxItems": 3},
        "dtype": {"type": "string"},
        "value_range": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        "is_patch_data": {"type": "boolean"},
        "channel_def": {"type": "object", "minProperties": 1},
    },
}
OUTPUT = {**TENSOR, "required": [key for key in TENSOR["required"] if key != "modality"]}
NETWORK_DATA_FORMAT = {
    "type": "object",
    "required": ["inputs", "outputs"],
    "properties": {
        "inputs": {"type": "object", "required": ["image"], "additionalProperties": TENSOR},
        "outputs": {"type": "object", "required": ["pred"], "additionalProperties": OUTPUT},
    },
}
MODEL = {
    "type": "object",
    "required": ["task", "description", "data_source", "eval_metrics", "network_data_format"],
    "properties": {
        "task": {"type": "string"},
        "description": {"type": "string"},
        "data_source": {"type": "string"},
        "eval_metrics": {"type": "object", "additionalProperties": {"type": "number"}},
        "network_data_format": NETWORK_DATA_FORMAT,
    },
}
BUNDLE = {
    **MODEL,
    "required": ["schema", "version", "changelog", "monai_version", "pytorch_version", "numpy_version",
                 "required_packages_version", "name", "authors", "copyright", "intended_use", *MODEL["required"]],
}
# the documented extension: further models, each described like the bundle's own, with its files
ADDITIONAL_MODEL = {
    **MODEL,
    "required": ["model_path", "inference_config", "training_config", *MODEL["required"]],
}
PYPI_NAMES = {"monai_version": "monai", "pytorch_version": "torch", "numpy_version": "numpy"}


def _models() -> dict[str, tuple[dict, list[str]]]:
    """Every shipped model: its metadata entry and its inference configs."""
    models = {"model": (METADATA, ["configs/common.json", "configs/inference.json"])}
    for name, entry in METADATA["additional_models"].items():
        extra = entry["inference_config"]
        models[name] = (entry, ["configs/common.json", "configs/inference.json", *([extra] if isinstance(extra, str) else extra)])
    return models


def test_bundle_metadata_has_the_schema_fields():
    jsonschema.validate(METADATA, BUNDLE)
    assert METADATA["version"] in METADATA["changelog"]


@pytest.mark.parametrize("name", sorted(METADATA["additional_models"]))
def test_additional_model_is_described_like_the_bundle(name):
    entry = METADATA["additional_models"][name]
    jsonschema.validate(entry, ADDITIONAL_MODEL)
    bundle = CONFIGS.parent
    for path in [entry["model_path"], *entry["training_config"],
                 *([entry["inference_config"]] if isinstance(entry["inference_config"], str) else entry["inference_config"])]:
        assert (bundle / path).is_file(), f"{name}: {path} not in the bundle"


def test_versions_are_the_installed_ones():
    for key, package in PYPI_NAMES.items():
        assert METADATA[key] == version(package).split("+")[0], key
    for package, expected in METADATA["required_packages_version"].items():
        assert version(package) == expected, package


@pytest.mark.parametrize("name", sorted(_models()))
def test_network_data_format_matches_the_network(name):
    entry, configs = _models()[name]
    parser = ConfigParser()
    parser.read_config([str(CONFIGS.parent / path) for path in configs])
    parser["bundle_root"] = str(CONFIGS.parent)
    network_format = entry["network_data_format"]
    image, pred = network_format["inputs"]["image"], network_format["outputs"]["pred"]
    assert image["num_channels"] == parser.get_parsed_content("in_channels")
    assert pred["num_channels"] == parser.get_parsed_content("network_def").out_channels
    spatial_dims = parser.get_parsed_content("spatial_dims")
    assert len(image["spatial_shape"]) == len(pred["spatial_shape"]) == spatial_dims
    for tensor in (image, pred):
        low, high = tensor["value_range"]
        assert low < 0 < high


def test_every_model_file_is_described():
    described = {Path(entry["model_path"]).name for entry, _ in _models().values() if "model_path" in entry}
    shipped = {path.name for path in (CONFIGS.parent / "models").glob("*.pt")}
    assert shipped == described | {"model.pt"}
