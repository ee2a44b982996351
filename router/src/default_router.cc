#include "embedded.h"
#include "tenpak/router.h"

namespace tenpak::router {

Result<RouterModel> default_router() {
  size_t n = 0;
  const uint8_t* p = embedded::default_router(&n);
  if (n == 0)
    return Status{Errc::invalid, "this tenpak was built without a default router (router/data/default.router was "
                                 "missing); pass --router FILE"};
  return parse_router(p, n, "built-in router");
}

}  // namespace tenpak::router
