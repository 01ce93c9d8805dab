// Runs a model saved by symcell.deploy (the cells' libraries, folder/symcell_*.so, and the program: model.pt from
// deploy.save, TorchScript, or model.pt2 from deploy.package, an AOTInductor package) at several sequence lengths,
// with libtorch only: no Python, no symcell.
//
//     run_model <folder>/<model.pt or model.pt2> <input size> [T ...]
//
// The input at length T is x[t, b, i] = sin(0.1 * k), k = (t * B + b) * I + i, for B = 2 rows: the same
// formula in Python gives the same tensor, so the outputs can be compared (examples/deploy/check.py). Each
// output is printed (its first values and its sum) and written to folder/cpp_<model file>_T<T>.pt, which Python
// reads with torch.load.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>

#include <dlfcn.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

// The per-cell operators register themselves (as TORCH_LIBRARY would) when their library is loaded: before the program.
static void load_symcell_libraries(const fs::path& folder) {
  std::vector<fs::path> libraries;
  for (const auto& f : fs::directory_iterator(folder)) {
    const std::string name = f.path().filename().string();
    if (name.rfind("symcell_", 0) == 0 && f.path().extension() == ".so") libraries.push_back(f.path());
  }
  std::sort(libraries.begin(), libraries.end());
  for (const auto& lib : libraries) {
    if (!dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
      std::cerr << "cannot load " << lib << ": " << dlerror() << "\n";
      std::exit(1);
    }
    std::cout << "loaded " << lib.filename().string() << "\n";
  }
}

// The program as a function of one input: TorchScript (torch::jit::load) or an AOTInductor package.
static std::function<torch::Tensor(const torch::Tensor&)> load_program(const fs::path& file) {
  if (file.extension() == ".pt2") {
    auto package = std::make_shared<torch::inductor::AOTIModelPackageLoader>(file.string());
    return [package](const torch::Tensor& x) { return package->run({x})[0]; };
  }
  auto module = std::make_shared<torch::jit::script::Module>(torch::jit::load(file.string()));
  module->eval();
  return [module](const torch::Tensor& x) { return module->forward({x}).toTensor(); };
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: run_model <folder>/<model.pt or model.pt2> <input size> [T ...]\n";
    return 2;
  }
  const fs::path file = argv[1], folder = file.parent_path();
  const int64_t I = std::stoll(argv[2]), B = 2;
  std::vector<int64_t> lengths;
  for (int k = 3; k < argc; ++k) lengths.push_back(std::stoll(argv[k]));
  if (lengths.empty()) lengths = {5, 23};

  load_symcell_libraries(folder);
  const auto program = load_program(file);
  torch::NoGradGuard no_grad;
  for (int64_t T : lengths) {
    torch::Tensor x = torch::sin(0.1 * torch::arange(T * B * I, torch::kFloat32)).reshape({T, B, I});
    torch::Tensor y = program(x);
    std::cout << file.filename().string() << " T=" << T << " output " << y.sizes() << " sum " << y.sum().item<double>()
              << " first";
    for (int64_t k = 0; k < std::min<int64_t>(3, y.numel()); ++k) std::cout << " " << y.flatten()[k].item<float>();
    std::cout << "\n";
    std::vector<char> bytes = torch::jit::pickle_save(y);
    const fs::path out = folder / ("cpp_" + file.filename().string() + "_T" + std::to_string(T) + ".pt");
    std::ofstream(out.string(), std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  return 0;
}
