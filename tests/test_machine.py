"""tlx.machine names the CPU well enough that figures from two machines are never confused: a
VM's model name is often only "AMD EPYC", for Zen 3, Zen 4 and Zen 5 alike."""

from tlx.machine import cpu_generation, cpu_info, cpu_isa

PROCESSOR = """processor\t: {n}
vendor_id\t: {vendor}
cpu family\t: {family}
model\t\t: {model}
model name\t: {name}
flags\t\t: fpu sse2 avx2 {extra}

"""


def write_cpuinfo(tmp_path, **first):
    text = PROCESSOR.format(n=0, **first)
    # A second processor with other values: only the first one is read.
    text += PROCESSOR.format(n=1, vendor="Other", family=1, model=1, name="Other CPU", extra="")
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return str(path)


def test_a_generic_amd_model_name_gets_its_family_model_and_generation(tmp_path):
    zen4 = write_cpuinfo(
        tmp_path,
        vendor="AuthenticAMD",
        family=25,
        model=17,
        name="AMD EPYC",
        extra="avx512f avx512_bf16",
    )
    name, flags = cpu_info(zen4)
    assert name == "AMD EPYC [family 25 model 17, Zen 4]"
    assert cpu_isa(flags) == "AVX512-BF16, AVX-512, AVX2"
    assert cpu_generation("AuthenticAMD", 26, 2) == "family 26 model 2, Zen 5"
    assert cpu_generation("AuthenticAMD", 25, 1) == "family 25 model 1, Zen 3"


def test_other_vendors_get_family_and_model_only_and_missing_fields_nothing(tmp_path):
    intel = write_cpuinfo(
        tmp_path,
        vendor="GenuineIntel",
        family=6,
        model=143,
        name="Intel(R) Xeon(R) Platinum 8480+",
        extra="amx_bf16 avx512f",
    )
    name, flags = cpu_info(intel)
    assert name == "Intel(R) Xeon(R) Platinum 8480+ [family 6 model 143]"
    assert "amx_bf16" in flags and "avx512_bf16" not in flags
    assert cpu_generation("GenuineIntel", None, 143) == ""
    name, flags = cpu_info(str(tmp_path / "absent"))
    assert name and flags == set()
