"""Golden parameter and mult-add counts against the paper and Keras."""

import json
import subprocess
import sys

import pytest

from mobilenet_flax import complexity, models, paper

# Exact counts (1000 classes): variant -> (trainable params, batch-norm
# statistics), and (variant, resolution) -> mult-adds. Computed once from
# the model and pinned; the tests below also tie them to the paper.
GOLDEN_PARAMS = {
  'mobilenet_v1_100': (4_231_976, 21_888),
  'mobilenet_v1_075': (2_585_560, 16_416),
  'mobilenet_v1_050': (1_331_592, 10_944),
  'mobilenet_v1_025': (470_072, 5_472),
  'mobilenet_v1_tiny': (186_672, 2_752),
}
GOLDEN_MULT_ADDS = {
  ('mobilenet_v1_100', 224): 568_740_352,
  ('mobilenet_v1_100', 192): 418_121_728,
  ('mobilenet_v1_100', 160): 290_675_200,
  ('mobilenet_v1_100', 128): 186_400_768,
  ('mobilenet_v1_075', 224): 325_400_448,
  ('mobilenet_v1_075', 192): 239_273_472,
  ('mobilenet_v1_075', 160): 166_396_800,
  ('mobilenet_v1_075', 128): 106_770_432,
  ('mobilenet_v1_050', 224): 149_497_088,
  ('mobilenet_v1_050', 192): 109_970_432,
  ('mobilenet_v1_050', 160): 76_524_800,
  ('mobilenet_v1_050', 128): 49_160_192,
  ('mobilenet_v1_025', 224): 41_030_272,
  ('mobilenet_v1_025', 192): 30_212_608,
  ('mobilenet_v1_025', 160): 21_059_200,
  ('mobilenet_v1_025', 128): 13_570_048,
  ('mobilenet_v1_tiny', 224): 14_293_312,
  ('mobilenet_v1_tiny', 64): 1_284_352,
}
PAPER_VARIANTS = {
  1.0: 'mobilenet_v1_100',
  0.75: 'mobilenet_v1_075',
  0.5: 'mobilenet_v1_050',
  0.25: 'mobilenet_v1_025',
}


def test_every_variant_has_golden_counts():
  assert set(GOLDEN_PARAMS) == set(models.VARIANTS)
  assert {v for v, _ in GOLDEN_MULT_ADDS} == set(models.VARIANTS)
  assert set(PAPER_VARIANTS.values()) <= set(models.VARIANTS)


@pytest.mark.parametrize(('variant', 'resolution'), sorted(GOLDEN_MULT_ADDS))
def test_golden_counts(variant, resolution):
  c = complexity.count(models.create_model(variant), resolution)
  assert (c.params, c.batch_stats) == GOLDEN_PARAMS[variant]
  assert c.mult_adds == GOLDEN_MULT_ADDS[variant, resolution]


def test_keras_total_for_alpha_1():
  c = complexity.count_for(1.0, 224)
  assert c.params + c.batch_stats == paper.KERAS_TOTAL_PARAMS == 4_253_864


def test_table2_percentages():
  breakdown = complexity.count_for(1.0, 224).breakdown()
  for layer_type, (madds_pct, weights_pct) in paper.TABLE2.items():
    assert breakdown[layer_type]['weights_pct'] == pytest.approx(
      weights_pct, abs=0.005
    )
    if layer_type == 'conv_3x3':
      # The paper prints 1.19%, a transposition of the exact 1.91%: with
      # 1.19 its four mult-add shares would sum to 99.29%, not 100%.
      assert madds_pct == 1.19
      madds_pct = 1.91
    assert breakdown[layer_type]['mult_adds_pct'] == pytest.approx(
      madds_pct, abs=0.005
    )


def test_tables_6_and_7_within_rounding():
  for alpha, (_, madds, params) in paper.TABLE6.items():
    c = complexity.count_for(alpha, 224)
    assert round(c.mult_adds / 1e6) == madds
    assert round(c.params / 1e6, 1) == params
  for resolution, (_, madds, params) in paper.TABLE7.items():
    c = complexity.count_for(1.0, resolution)
    # Table 7 prints 290.7 million as 290 (the release rounds it to 291), so
    # "within rounding" means less than one million apart.
    assert abs(c.mult_adds / 1e6 - madds) < 1
    assert round(c.params / 1e6, 1) == params


def test_released_params_within_rounding():
  # The release's own figures are loose (they round neither the trainable
  # count nor the total consistently); ours are within 0.01 million.
  for alpha, mparams in paper.RELEASED_PARAMS.items():
    c = complexity.count_for(alpha, 224)
    assert abs(c.params / 1e6 - mparams) <= 0.01


def test_counts_do_not_depend_on_conv_impl():
  a = complexity.count(models.MobileNetV1(alpha=0.25), 96)
  b = complexity.count(models.MobileNetV1(alpha=0.25, conv_impl='shifted'), 96)
  c = complexity.count(
    models.MobileNetV1(alpha=0.25, conv_impl='grouped_conv'), 96
  )
  assert a == b == c


def test_layer_classification():
  c = complexity.count_for(0.5, 128)
  types = [layer.layer_type for layer in c.layers]
  assert types.count('conv_3x3') == 1
  assert types.count('depthwise_3x3') == 13
  assert types.count('conv_1x1') == 13
  assert types.count('fully_connected') == 1


def _cli(*args):
  return subprocess.run(
    [sys.executable, '-m', 'mobilenet_flax.complexity', *args],
    capture_output=True,
    text=True,
    check=False,
  )


def test_cli_json():
  result = _cli('--alpha', '0.75', '--resolution', '160', '--json')
  assert result.returncode == 0, result.stderr
  data = json.loads(result.stdout)
  assert data['params'] == GOLDEN_PARAMS['mobilenet_v1_075'][0]
  assert data['batch_stats'] == GOLDEN_PARAMS['mobilenet_v1_075'][1]
  assert data['mult_adds'] == GOLDEN_MULT_ADDS['mobilenet_v1_075', 160]
  assert set(data['breakdown']) == set(complexity.LAYER_TYPES)


def test_cli_rejects_bad_values():
  result = _cli('--alpha', '0', '--json')
  assert result.returncode != 0
  assert 'error: --alpha must be in (0, 4], got 0.0.' in result.stderr
  assert 'Traceback' not in result.stderr
  result = _cli('--resolution', '16')
  assert result.returncode != 0
  assert '--resolution must be >= 32' in result.stderr
