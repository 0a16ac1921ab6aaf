// The web page's files (web/), embedded into the binary at build time by cmake/embed_assets.cmake.
#pragma once
#include <cstddef>
#include <vector>

namespace cifar::serve {

struct Asset {
  const char* path;  // URL path: "/index.html", "/app.js", ...
  const char* type;  // Content-Type
  const unsigned char* data;
  size_t size;
};

const std::vector<Asset>& assets();

}  // namespace cifar::serve
