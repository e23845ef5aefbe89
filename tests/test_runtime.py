"""merjax.parallel.platform: XLA defaults for the host, without overriding the user's flags."""

import subprocess
import sys

from merjax.parallel import platform as runtime

FLAG = "--xla_cpu_prefer_vector_width=512"


def test_avx512_is_read_from_cpuinfo(tmp_path):
  with_avx = tmp_path / "with"
  with_avx.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
  without = tmp_path / "without"
  without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_vnni_like\n")
  assert runtime.cpu_has_avx512(cpuinfo=str(with_avx))
  assert not runtime.cpu_has_avx512(cpuinfo=str(without))
  assert not runtime.cpu_has_avx512(cpuinfo=str(tmp_path / "missing"))
  assert runtime.xla_cpu_defaults(avx512=True) == (FLAG,)
  assert runtime.xla_cpu_defaults(avx512=False) == ()


def test_defaults_are_appended_once_and_never_override_the_user():
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  assert runtime.apply_xla_cpu_defaults(env, avx512=True) == (FLAG,)
  assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=8 {FLAG}"
  assert runtime.apply_xla_cpu_defaults(env, avx512=True) == ()  # already there
  assert env["XLA_FLAGS"].count("prefer_vector_width") == 1
  user = {"XLA_FLAGS": "--xla_cpu_prefer_vector_width=256"}
  assert runtime.apply_xla_cpu_defaults(user, avx512=True) == ()
  assert user["XLA_FLAGS"] == "--xla_cpu_prefer_vector_width=256"
  empty = {}
  assert runtime.apply_xla_cpu_defaults(empty, avx512=True) == (FLAG,)
  assert empty["XLA_FLAGS"] == FLAG
  off = {"MERJAX_XLA_DEFAULTS": "0"}
  assert runtime.apply_xla_cpu_defaults(off, avx512=True) == () and "XLA_FLAGS" not in off
  assert runtime.apply_xla_cpu_defaults({}, avx512=False) == ()


def test_the_flag_is_one_this_xla_accepts():
  # XLA aborts on an unknown flag in XLA_FLAGS: run a computation with the default applied.
  code = ("import os; from merjax.parallel import platform as runtime; "
          "runtime.apply_xla_cpu_defaults(avx512=True); "
          "import jax.numpy as jnp; print(float(jnp.arange(4.0).sum()), os.environ['XLA_FLAGS'])")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ["6.0", FLAG]
