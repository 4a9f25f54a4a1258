"""A table of malformed recipes: each gives exactly one problem, with its line:col and message.

Every case edits the valid base recipe of tests/fixtures/config.py (``None``
as the old text replaces the whole file) and asserts the exact error line a
technician would see, ``file:line:col: field: message``.
"""

from __future__ import annotations

import pytest

from edge.config import RecipeError, load_recipe, parse_recipe
from tests.fixtures.config import CONFIG_BASE_RECIPE

CASES = [
    ('syntax_unclosed_list', '[[10, 10], [200, 10], [200, 100], [10, 100]]', '[[10, 10], [200, 10], [200, 100], [10, 100]',
     "26:7: YAML syntax error: expected ',' or ']', but got '<scalar>' (while parsing a flow sequence started at line 25)"),
    ('syntax_bad_indent', '  mode: resize\n', '   mode: resize\n',
     "15:3: YAML syntax error: expected <block end>, but found '<block mapping start>' (while parsing a block mapping started at line 1)"),
    ('duplicate_key', 'decision:\n', 'thresholds:\n  pixel: 0.2\ndecision:\n',
     "28:1: duplicate key 'thresholds' (first written at line 18); keep one"),
    ('unknown_top_key', 'thresholds:\n', 'treshold:\n',
     "18:1: treshold: unknown key 'treshold' — did you mean 'thresholds'?"),
    ('unknown_nested_key', '  threads: 2', '  treads: 2',
     "12:3: expert.treads: unknown key 'treads' — did you mean 'threads'?"),
    ('unknown_key_no_match', '  threads: 2', '  colour: red',
     "12:3: expert.colour: unknown key 'colour' — valid keys: backend, min_fidelity, model, providers, spin_wait, threads, trt_cache_dir, trt_fp16, trt_max_bank, trt_max_tiles"),
    ('wrong_type_int', '  threads: 2', '  threads: two',
     "12:3: expert.threads: must be a whole number (got 'two')"),
    ('wrong_type_section', 'thresholds:\n  image_score: 0.35\n  pixel: 0.3\n', 'thresholds: 0.35\n',
     "18:1: thresholds: must be a section of 'key: value' lines (got 0.35)"),
    ('out_of_range_score', 'image_score: 0.35', 'image_score: 2.7',
     '19:3: thresholds.image_score: must be between 0 and 2 (got 2.7)'),
    ('out_of_range_port', 'port: 1883', 'port: 70000',
     '32:3: mqtt.port: must be between 1 and 65535 (got 70000)'),
    ('bad_choice', 'mode: resize', 'mode: tiles',
     "14:3: tiling.mode: must be one of 'resize', 'tile' (got 'tiles')"),
    ('unknown_source_type', 'type: synthetic', 'type: camra',
     "5:3: source.type: unknown type 'camra': must be one of synthetic, folder, genicam — did you mean 'genicam'?"),
    ('misspelled_source_type_key', 'type: synthetic', 'typex: synthetic',
     "5:3: source.typex: unknown key 'typex' — did you mean 'type'? (type selects one of synthetic, folder, genicam)"),
    ('misspelled_expert_backend_key', 'backend: onnxruntime', 'backnd: onnxruntime',
     "10:3: expert.backnd: unknown key 'backnd' — did you mean 'backend'? (backend selects one of onnxruntime, tensorrt, openvino)"),
    ('missing_source_type', '  type: synthetic\n', '',
     "4:1: source: missing 'type': one of synthetic, folder, genicam"),
    ('missing_required_key', '  model: expert.onnx\n', '',
     "9:1: expert.model: missing required key 'model'"),
    ('missing_required_section', 'bank:\n  path: line3.bank.npz\n', '',
     "1:1: bank: missing required key 'bank'"),
    ('wrong_version', 'version: 1', 'version: 2',
     '1:1: version: this appliance reads recipe version 1 (got 2)'),
    ('resolution_not_multiple', 'resolution: 224', 'resolution: 230',
     '15:3: tiling.resolution: must be a multiple of the patch size 14, e.g. 224 (got 230)'),
    ('bad_name', 'line: line3', 'line: line 3',
     "2:1: line: may contain only letters, digits, '_' and '-' (got 'line 3')"),
    ('missing_model_file', 'model: expert.onnx', 'model: engines/missing.onnx',
     '11:3: expert.model: file not found: D/engines/missing.onnx'),
    ('missing_tls_ca', '  port: 1883\n', '  port: 8883\n  tls:\n    ca_file: certs/ca.pem\n',
     '34:5: mqtt.tls.ca_file: file not found: D/certs/ca.pem'),
    ('missing_password_file', '  port: 1883\n', '  port: 1883\n  username: plc\n  password_file: secret.txt\n',
     '34:3: mqtt.password_file: file not found: D/secret.txt'),
    ('password_without_user', '  port: 1883\n', '  port: 1883\n  password_file: password.txt\n',
     '33:3: mqtt.password_file: a password_file needs a username: add mqtt.username'),
    ('cert_without_key', '  port: 1883\n', '  port: 8883\n  tls:\n    ca_file: ca.pem\n    cert_file: client.pem\n',
     '35:5: mqtt.tls.cert_file: mutual TLS needs both cert_file and key_file: add key_file or remove cert_file'),
    ('missing_producer', '  type: synthetic\n  width: 448\n  height: 448\n', '  type: genicam\n  producer: /opt/vendor/missing.cti\n',
     '6:3: source.producer: file not found: /opt/vendor/missing.cti'),
    ('missing_folder', '  type: synthetic\n  width: 448\n  height: 448\n', '  type: folder\n  path: frames\n',
     '6:3: source.path: folder not found: D/frames'),
    ('polygon_two_points', '[[10, 10], [200, 10], [200, 100], [10, 100]]', '[[10, 10], [200, 10]]',
     '25:7: rules.zones[0].polygon: a zone polygon needs at least 3 points [x, y] (got 2)'),
    ('polygon_bow_tie', '[[10, 10], [200, 10], [200, 100], [10, 100]]', '[[10, 10], [200, 100], [200, 10], [10, 100]]',
     '25:7: rules.zones[0].polygon: edges cross (edge 1→2 and edge 3→4); list the corners in order around the zone'),
    ('polygon_point_not_pair', '[[10, 10], [200, 10], [200, 100], [10, 100]]', '[[10, 10], [200, 10, 5], [200, 100]]',
     '25:27: rules.zones[0].polygon[1]: a point is [x, y] in frame pixels (got [200, 10, 5])'),
    ('polygon_outside_frame', '[[10, 10], [200, 10], [200, 100], [10, 100]]', '[[10, 10], [500, 10], [500, 100], [10, 100]]',
     '25:27: rules.zones[0].polygon[1]: point [500, 10] is outside the 448x448 frame'),
    ('zone_below_pixel_threshold', '      pixel: 0.4', '      pixel: 0.2',
     "26:7: rules.zones[0].pixel: zone threshold 0.2 is below thresholds.pixel 0.3, so it can never apply (regions are cut at thresholds.pixel): lower thresholds.pixel or raise the zone's pixel"),
    ('ignored_zone_with_threshold', '      min_area_mm2: 0.1\n', '      min_area_mm2: 0.1\n      ignore: true\n',
     "26:7: rules.zones[0].pixel: an ignored zone has no thresholds: remove 'pixel' or set ignore: false"),
    ('mm2_without_pitch', 'pixel_pitch_mm: 0.05\n', '',
     '26:7: rules.zones[0].min_area_mm2: needs pixel_pitch_mm (mm per pixel): set pixel_pitch_mm or use min_area_px'),
    ('duplicate_zone_name', '      min_area_mm2: 0.1\n', '      min_area_mm2: 0.1\n    - name: seal\n      polygon: [[0, 0], [5, 0], [5, 5]]\n',
     "28:7: rules.zones[1].name: zone name 'seal' is already used by zone 1; names must be unique"),
    ('always_reject_without_prototypes', '  min_area_px: 16\n', '  min_area_px: 16\n  always_reject: [crack]\n',
     '23:3: rules.always_reject: defect types need prototypes: set assistant.prototypes (built by `iad-edge calibrate --defects DIR`)'),
    ('roi_outside_frame', 'pixel_pitch_mm', 'roi: {x: 100, y: 0, width: 400, height: 100}\npixel_pitch_mm',
     '8:21: roi.width: roi.x + roi.width = 500 exceeds the frame width 448'),
    ('not_a_mapping', None, '- version: 1\n- line: x\n',
     '1:1: a recipe must be a mapping of keys (version, source, expert, ...)'),
    ('include_missing', 'version: 1\n', 'version: 1\ninclude: line3.generated.yaml\n',
     '2:1: include: recipe file not found: D/line3.generated.yaml (it is written by `iad-edge calibrate D/line3.yaml --good DIR`, which runs without it)'),
    ('negative_window', 'window_ms: 150', 'window_ms: -5',
     '29:3: decision.window_ms: must be between 1 and 60000 (got -5)'),
]


def test_config_base_recipe_is_valid(config_recipe_dir):
    recipe = parse_recipe(CONFIG_BASE_RECIPE, config_recipe_dir / "line3.yaml", check_files=True)
    assert recipe.rules.zones[0].name == "seal"
    assert recipe.expert.model == config_recipe_dir / "expert.onnx"


def test_config_table_has_at_least_20_cases():
    assert len(CASES) >= 20
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name,old,new,expected", CASES, ids=[c[0] for c in CASES])
def test_config_malformed_recipe(config_recipe_dir, name, old, new, expected):
    if old is None:
        text = new
    else:
        assert old in CONFIG_BASE_RECIPE, f"case {name}: base recipe changed"
        text = CONFIG_BASE_RECIPE.replace(old, new, 1)
    path = config_recipe_dir / "line3.yaml"
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, path, check_files=True)
    problems = [p.replace(str(config_recipe_dir), "D") for p in info.value.problems]
    assert problems == [f"D/line3.yaml:{expected}"]


def test_config_load_recipe_reports_the_same_from_disk(config_recipe_dir):
    path = config_recipe_dir / "line3.yaml"
    path.write_text(CONFIG_BASE_RECIPE.replace("image_score: 0.35", "image_score: 2.7"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert info.value.problems == [f"{path}:19:3: thresholds.image_score: must be between 0 and 2 (got 2.7)"]


def test_config_several_problems_are_all_reported_in_line_order(config_recipe_dir):
    text = CONFIG_BASE_RECIPE.replace("port: 1883", "port: 0").replace("  threads: 2", "  treads: 2")
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, config_recipe_dir / "line3.yaml")
    lines = [p.split(": ", 1)[0].rsplit(":", 2)[1] for p in info.value.problems]
    assert lines == ["12", "32"]


def test_config_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "nope.yaml")
    assert info.value.problems == [f"{tmp_path / 'nope.yaml'}: recipe file not found: {tmp_path / 'nope.yaml'}"]


def test_config_missing_files_are_only_checked_on_request(config_recipe_dir):
    text = CONFIG_BASE_RECIPE.replace("model: expert.onnx", "model: not-built-yet.onnx")
    recipe = parse_recipe(text, config_recipe_dir / "line3.yaml")
    assert recipe.expert.model == config_recipe_dir / "not-built-yet.onnx"
    with pytest.raises(RecipeError):
        parse_recipe(text, config_recipe_dir / "line3.yaml", check_files=True)
