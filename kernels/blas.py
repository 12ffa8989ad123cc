"""Matrix products called from inside Numba code: NumPy's own OpenBLAS, through its C interface.

NumPy's ``@`` cannot run inside an ``@jit`` function, and Numba's ``np.dot``
needs SciPy. But NumPy's OpenBLAS is already loaded in the process, and its
``cblas_sgemm`` / ``cblas_dgemm`` can be called from compiled code through
their address. That lets a kernel run a whole recurrent loop in one compiled
function, with no Python between the steps (``lstm_sequence.py``).

The address is an argument of the compiled functions, not a constant baked
into them, so they stay cacheable on disk (an address changes from process to
process). :func:`find_gemm` returns ``None`` where NumPy has no OpenBLAS (MKL,
Accelerate): the callers then keep their NumPy loop.

OpenBLAS builds name their functions differently: NumPy 2's wheels bundle
``scipy_openblas64_`` (64-bit integers, ``scipy_cblas_sgemm64_``); other builds
have ``cblas_sgemm64_`` (64-bit) or plain ``cblas_sgemm`` (32-bit). The
integer width is a compile-time choice here, from the ``blas_int`` argument.
"""

import contextlib
import ctypes

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._common import jit
from .threads import numpy_openblas

# CBLAS enum values (cblas.h).
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

# (symbol prefix, suffix, integer type of the sizes), most likely first.
_GEMM_NAMES = (
    ("scipy_cblas_", "gemm64_", np.int64),
    ("cblas_", "gemm64_", np.int64),
    ("scipy_cblas_", "gemm", np.int32),
    ("cblas_", "gemm", np.int32),
)

_found = {}


def find_gemm(dtype):
    """``(address, blas_int)`` of OpenBLAS's ``cblas_?gemm`` for float32 or float64, or None.

    ``blas_int`` is a zero of the integer type the function takes for sizes
    (``np.int64`` or ``np.int32``); pass both to :func:`gemm_into`.
    """
    letter = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}.get(np.dtype(dtype))
    if letter is None:
        return None
    if letter not in _found:
        _found[letter] = _look_up(letter)
    return _found[letter]


@contextlib.contextmanager
def pretend_no_openblas():
    """Within this block :func:`find_gemm` finds nothing, so the kernels built on it take
    the Python loops they run where NumPy has no OpenBLAS: for tests and for timing
    both ways in one process (``benchmarks/bench_recurrent.py``). Not thread-safe."""
    saved = dict(_found)
    _found.update(s=None, d=None)
    try:
        yield
    finally:
        _found.clear()
        _found.update(saved)


def _look_up(letter):
    path = numpy_openblas()
    if path is not None:
        library = ctypes.CDLL(path)
        for prefix, suffix, int_type in _GEMM_NAMES:
            function = getattr(library, f"{prefix}{letter}{suffix}", None)
            if function is not None:
                return ctypes.cast(function, ctypes.c_void_p).value, int_type(0)
    return None


@intrinsic
def _cblas_gemm(typingctx, address, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Call the row-major ``cblas_?gemm`` at ``address``: ``c = alpha * op(a) @ op(b) + beta * c``
    with leading dimensions ``lda``, ``ldb``, ``ldc``, where ``op`` transposes when ``trans_a`` /
    ``trans_b`` is CBLAS's ``_TRANS``; a, b, c are arrays, passed as their data pointers."""
    size = m  # every size has the type of blas_int (see gemm_into)

    def codegen(context, builder, signature, args):
        address_value, trans_a_v, trans_b_v, m_v, n_v, k_v, alpha_v, a_v, lda_v, b_v, ldb_v, beta_v, c_v, ldc_v = args
        int_ir = context.get_value_type(size)
        float_ir = context.get_value_type(alpha)
        pointer = ir.IntType(8).as_pointer()
        enum = ir.IntType(32)
        function_type = ir.FunctionType(
            ir.VoidType(),
            [enum, enum, enum, int_ir, int_ir, int_ir, float_ir, pointer, int_ir, pointer, int_ir, float_ir, pointer,
             int_ir],
        )
        function = builder.inttoptr(address_value, function_type.as_pointer())

        def data(array_type, value):
            return builder.bitcast(context.make_array(array_type)(context, builder, value).data, pointer)

        builder.call(function, [
            ir.Constant(enum, _ROW_MAJOR), builder.trunc(trans_a_v, enum), builder.trunc(trans_b_v, enum),
            m_v, n_v, k_v, alpha_v, data(a, a_v), lda_v, data(b, b_v), ldb_v, beta_v, data(c, c_v), ldc_v,
        ])  # fmt: skip
        return context.get_dummy_value()

    if not (isinstance(size, types.Integer) and all(t == size for t in (n, k, lda, ldb, ldc))):
        return None
    if alpha not in (types.float32, types.float64) or beta != alpha:
        return None
    if not all(isinstance(t, types.Array) and t.dtype == alpha for t in (a, b, c)):
        return None
    signature = types.void(types.intp, types.intp, types.intp, size, size, size, alpha, a, size, b, size, alpha, c,
                           size)
    return signature, codegen


@jit
def _leading_dimension(array):
    """BLAS's leading dimension of a 2-D array with contiguous rows: its row stride in elements.

    NumPy gives any stride to an axis of length 1 (a C-contiguous (1, n) array may
    have a row stride of 1 element), which BLAS would refuse: a single row gets n.
    """
    if array.shape[1] > 1 and array.strides[1] != array.itemsize:
        raise ValueError("gemm_into: the rows of every matrix must be contiguous")
    if array.shape[0] > 1:
        return array.strides[0] // array.itemsize
    return max(1, array.shape[1])


@jit
def gemm_into(address, blas_int, a, b, c, beta, transpose_a=False, transpose_b=False):
    """``c[...] = op(a) @ op(b) + beta * c`` for 2-D arrays whose rows are contiguous (views of
    larger arrays are fine: their row strides become BLAS's leading dimensions); ``op``
    transposes ``a`` when ``transpose_a`` (``a`` is then (K, M)) and ``b`` when ``transpose_b``
    (``b`` is then (N, K)), without a copy: BLAS reads the stored rows as columns.

    ``address`` and ``blas_int`` come from :func:`find_gemm` for the arrays' dtype.
    OpenBLAS runs the product on as many threads as it is set to.
    """
    m, k = (a.shape[1], a.shape[0]) if transpose_a else (a.shape[0], a.shape[1])
    k_b, n = (b.shape[1], b.shape[0]) if transpose_b else (b.shape[0], b.shape[1])
    if k_b != k or c.shape[0] != m or c.shape[1] != n:
        raise ValueError("gemm_into: shapes do not match (op(a) (M, K), op(b) (K, N), c (M, N))")
    size = type(blas_int)
    _cblas_gemm(address, _TRANS if transpose_a else _NO_TRANS, _TRANS if transpose_b else _NO_TRANS,
                size(m), size(n), size(k), c.dtype.type(1), a, size(_leading_dimension(a)), b,
                size(_leading_dimension(b)), c.dtype.type(beta), c, size(_leading_dimension(c)))
