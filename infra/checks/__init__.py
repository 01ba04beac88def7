"""Custom checkov checks for infra/ (loaded with --external-checks-dir infra/checks).

checkov imports every `*.py` here as a top-level module named after the file and puts
this directory on sys.path, so the checks share helpers through `import ju_common`.
A file that fails to import is only logged by checkov: .ci/infra-check.sh therefore
asserts that every id in `ju_common.CUSTOM_CHECK_IDS` appears in the results.
"""
