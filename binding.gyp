# node-gyp build of the CPU backend, for environments without CMake.
# CMakeLists.txt is the main build (it also builds the CUDA backend and links Gloo).
{
  "targets": [
    {
      "target_name": "rlfarm_avx2",
      "type": "static_library",
      "conditions": [["target_arch=='x64'", {
        "sources": ["native/cpu/kernels_avx2.cpp", "native/cpu/gemm_avx2.cpp"],
        "cflags_cc": ["-O3", "-std=c++17", "-fPIC", "-mavx2", "-mfma", "-mf16c", "-Wno-uninitialized"]
      }]],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++1y", "-std=gnu++17"]
    },
    {
      "target_name": "rlfarm_avx512",
      "type": "static_library",
      "conditions": [["target_arch=='x64'", {
        "sources": ["native/cpu/kernels_avx512.cpp", "native/cpu/gemm_avx512.cpp"],
        "cflags_cc": ["-O3", "-std=c++17", "-fPIC", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c", "-Wno-uninitialized"]
      }]],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++1y", "-std=gnu++17"]
    },
    {
      "target_name": "rlfarm",
      "sources": [
        "native/core/tensor.cpp",
        "native/core/thread_pool.cpp",
        "native/cpu/dispatch.cpp",
        "native/cpu/rl_kernels.cpp",
        "native/cpu/kernels_generic.cpp",
        "native/cpu/gemm.cpp",
        "native/cpu/gemm_generic.cpp",
        "native/cuda/absent.cpp",
        "native/ops/ops.cpp",
        "native/ops/cast.cpp",
        "native/model/layout.cpp",
        "native/model/weights.cpp",
        "native/model/layers.cpp",
        "native/model/sampling.cpp",
        "native/model/optimizer.cpp",
        "native/model/transformer.cpp",
        "native/model/generate.cpp",
        "native/cuda/plan.cpp",
        "native/binding/tensor_wrap.cpp",
        "native/binding/model_wrap.cpp",
        "native/distributed/store.cpp",
        "native/distributed/gloo.cpp",
        "native/distributed/zero.cpp",
        "native/distributed/overlap.cpp",
        "native/distributed/nccl.cpp",
        "native/binding/distributed_wrap.cpp",
        "native/binding/optimizer_wrap.cpp",
        "native/binding/loss_args.cpp",
        "native/binding/addon.cpp"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "libraries": ["-ldl"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-O3", "-fno-math-errno", "-fopenmp-simd", "-std=c++17", "-fexceptions", "-frtti", "-fvisibility=hidden"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++1y", "-std=gnu++17"],
      "conditions": [["target_arch=='x64'", {
        "dependencies": ["rlfarm_avx2", "rlfarm_avx512"]
      }]]
    }
  ]
}
