// zxing-cpp is C++ only (its C API came in 2.x); ZXingShim wraps what sessiond uses.
