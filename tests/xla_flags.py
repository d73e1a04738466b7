"""The XLA flags every program in the test suite compiles with (why: see
conftest.py), for a given number of fake CPU devices. conftest.py sets
them for the test processes, whose environment the programs they start
inherit; tests that start programs with another device count pass their
own."""

COMPILE = (
  '--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false'
)


def for_devices(count: int) -> str:
  return f'--xla_force_host_platform_device_count={count} {COMPILE}'
