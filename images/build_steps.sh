#!/bin/sh
# The install steps of every image (images/{agent,collector,operator}/Dockerfile): one recipe, three Dockerfiles.
#
#   build_steps.sh deps ACCELERATOR TARGET...   third-party requirements of TARGETs (pyproject_deps.py) into the
#                                               venv /opt/mlmodelscope, pinned by constraints.txt (MXNet's:
#                                               constraints-mxnet.txt)
#   build_steps.sh app "MODULE..." SOURCE_DIR...  our distributions, built as wheels, into the same venv (no deps);
#                                               then MODULEs are imported once
#
# Bytecode: pip compiles nothing (--no-compile); importing the entrypoint's modules once at build time writes the
# .pyc files of exactly what a run imports at start (a read-only root filesystem could not cache them later), so
# the image carries no bytecode of modules it never imports (37 of the ONNX Runtime image's MB were bytecode).
# Removed: numpy's test suites (nothing imports them) and, on CPU, ONNX Runtime's unused C API library.
#
# The venv holds neither pip nor setuptools: a tools venv (/build/tools, pinned pip/setuptools/wheel, left behind
# in the build stages) installs into it with `pip --python`. When /wheelhouse holds wheels (make images fills it on
# the host: build argument WHEELHOUSE) everything comes from there alone (--no-index): the build needs no network.
set -eu
VENV=/opt/mlmodelscope
TOOLS=/build/tools
if ls /wheelhouse/*.whl >/dev/null 2>&1; then
    SOURCE="--no-index --find-links /wheelhouse"
else
    SOURCE=""
fi
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

step=$1
shift
case $step in
deps)
    accelerator=$1
    shift
    constraints=constraints.txt
    case " $* " in *"[mxnet]"*) constraints=constraints-mxnet.txt ;; esac
    python -m venv $TOOLS
    # shellcheck disable=SC2086 # SOURCE is a list of options
    $TOOLS/bin/python -m pip install -q $SOURCE -c $constraints pip setuptools wheel
    python -m venv --without-pip $VENV
    $TOOLS/bin/python pyproject_deps.py --root . --constraints $constraints --accelerator "$accelerator" "$@" \
        > requirements.txt
    extra=""
    # PyPI's x86-64 torch bundles CUDA (GB): the CPU build (torch==X+cpu) comes from PyTorch's own index.
    if [ -z "$SOURCE" ] && grep -q '^torch==.*+cpu' requirements.txt; then
        extra="--extra-index-url https://download.pytorch.org/whl/cpu"
    fi
    echo "installing into $VENV (${SOURCE:-from the index}):" $(cat requirements.txt)
    # shellcheck disable=SC2086
    $TOOLS/bin/python -m pip --python $VENV/bin/python install -q --no-compile $SOURCE $extra -c $constraints \
        -r requirements.txt
    site=$(echo $VENV/lib/python3*/site-packages)
    find "$site/numpy" -type d -name tests -prune -exec rm -rf {} + 2>/dev/null || true
    if [ "$accelerator" = cpu ]; then
        # ONNX Runtime's wheel carries its C API library beside the Python binding, which does not load it (the
        # binding links the runtime in): 35 MB no Python program uses. The smoke test runs ORT without it.
        rm -f "$site"/onnxruntime/capi/libonnxruntime.so.*
    fi
    ;;
app)
    modules=$1
    shift
    # shellcheck disable=SC2086
    $TOOLS/bin/python -m pip wheel -q $SOURCE --no-deps --no-build-isolation -w /build/dist "$@"
    $TOOLS/bin/python -m pip --python $VENV/bin/python install -q --no-compile --no-index --no-deps /build/dist/*.whl
    for module in $modules; do
        env -u PYTHONDONTWRITEBYTECODE $VENV/bin/python -c "import $module"
    done
    ;;
*)
    echo "build_steps.sh: unknown step $step (deps or app)" >&2
    exit 2
    ;;
esac
