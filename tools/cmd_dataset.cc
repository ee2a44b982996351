// tenpak dataset build|apply|verify|inspect|estimate, and the seeds'
// spellings `tenpak delta compress` and `tenpak delta-dataset compress`.
// apply, verify and inspect are the delta commands' own code paths: a
// dataset delta is an ordinary delta whose frames use codec 10 (patch).
#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "cli_util.h"
#include "commands.h"
#include "tenpak/curl_api.h"
#include "tenpak/http_source.h"
#include "tenpak/dataset.h"
#include "tenpak/open_source.h"
#include "tenpak/out_file.h"

namespace tenpak::cli {
namespace {

using json = nlohmann::ordered_json;
namespace fs = std::filesystem;

// ---- remote data sets -----------------------------------------------------------
// BASE and DERIVED may be remote; build and estimate read all of them, so
// they are downloaded first into a hidden directory next to the output
// (removed afterwards, and on any failure):
//   hf://datasets/ORG/NAME[@REV][/PATH]  the hub's dataset repo (or a folder or
//       file in it): files listed by {HF_ENDPOINT}/api/datasets/ORG/NAME/tree/REV[/PATH]?recursive=true,
//       fetched from {HF_ENDPOINT}/datasets/ORG/NAME/resolve/REV/FILE (HF_TOKEN sent, as for models);
//   http(s)://.../DIR/   (a trailing slash) a directory listing (the HTML index of nginx, Apache,
//       python -m http.server): every relative link is a file, or a folder when it ends in '/';
//   http(s)://.../FILE   one file.
// A remote base is recorded (unless --base-location says otherwise) as the
// URL its files resolve under, so apply, verify and the mount find it again.

bool is_dataset_hub(const std::string& loc) { return loc.rfind("hf://datasets/", 0) == 0; }
bool remote(const std::string& loc) { return is_dataset_hub(loc) || loc.rfind("http://", 0) == 0 || loc.rfind("https://", 0) == 0; }

std::string hf_endpoint() {
  const char* e = std::getenv("HF_ENDPOINT");
  std::string s = e && *e ? e : "https://huggingface.co";
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

std::string url_decode(const std::string& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      o += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      o += s[i];
    }
  }
  return o;
}

size_t on_body(char* p, size_t sz, size_t n, void* u) {
  auto* s = static_cast<std::string*>(u);
  if (s->size() + sz * n > (64u << 20)) return 0;  // listings are small; refuse the rest
  s->append(p, sz * n);
  return sz * n;
}

// GET of a small text (a listing): the body, or an error naming the URL,
// its code what a download's would be (HttpSource's mapping:
// fetch_cause_of_curl / fetch_cause_of_http_status, then
// errc_of_fetch_cause): 4xx not_found, an origin that cannot be reached or
// answers 5xx / 429 unavailable, another status io.
Result<std::string> http_get_text(const std::string& url) {
  auto api = load_curl();
  if (!api.ok()) return api.status();
  std::unique_ptr<CURL, void (*)(CURL*)> c((*api)->easy_init(), (*api)->easy_cleanup);
  if (!c) return Status{Errc::io, "curl_easy_init failed"};
  std::string body;
  curl_api().easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_api().easy_setopt(c.get(), CURLOPT_FOLLOWLOCATION, 1L);
  curl_api().easy_setopt(c.get(), CURLOPT_CONNECTTIMEOUT, 15L);
  curl_api().easy_setopt(c.get(), CURLOPT_TIMEOUT, 120L);
  curl_api().easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, on_body);
  curl_api().easy_setopt(c.get(), CURLOPT_WRITEDATA, &body);
  curl_slist* h = nullptr;
  const char* tok = std::getenv("HF_TOKEN");
  if (tok && *tok && url.rfind(hf_endpoint() + "/", 0) == 0) h = curl_api().slist_append(h, ("Authorization: Bearer " + std::string(tok)).c_str());
  if (h) curl_api().easy_setopt(c.get(), CURLOPT_HTTPHEADER, h);
  CURLcode rc = curl_api().easy_perform(c.get());
  long code = 0;
  curl_api().easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &code);
  if (h) curl_api().slist_free_all(h);
  if (rc != CURLE_OK)
    return Status{errc_of_fetch_cause(fetch_cause_of_curl(rc)), redact_urls(url) + ": " + curl_api().easy_strerror(rc)};
  if (code >= 300)
    return Status{errc_of_fetch_cause(fetch_cause_of_http_status(code)), redact_urls(url) + ": HTTP " + std::to_string(code)};
  return body;
}

struct RemoteFile {
  std::string name, url;  // name: relative path in the data set
};

// Files of an HTML directory listing at `dir` (ends with '/'), recursively.
Status list_html(const std::string& dir, const std::string& prefix, int depth, std::vector<RemoteFile>& out) {
  if (depth > 8) return {Errc::invalid, redact_urls(dir) + ": folders nested more than 8 deep"};
  auto body = http_get_text(dir);
  if (!body.ok()) return body.status();
  const std::string& b = *body;
  std::set<std::string> seen;
  for (size_t p = b.find("href=\""); p != std::string::npos; p = b.find("href=\"", p + 6)) {
    size_t e = b.find('"', p + 6);
    if (e == std::string::npos) break;
    std::string href = b.substr(p + 6, e - p - 6);
    // Only plain relative links name entries (not sort links, parents, other hosts).
    if (href.empty() || href[0] == '?' || href[0] == '#' || href[0] == '/' || href.rfind("../", 0) == 0 ||
        href == "./" || href.find("://") != std::string::npos || href.find('?') != std::string::npos || !seen.insert(href).second)
      continue;
    const std::string name = url_decode(href);
    if (name.back() == '/') {
      TP_RETURN_IF_ERROR(list_html(dir + href, prefix + name, depth + 1, out));
    } else {
      if (!is_safe_relative_path(prefix + name)) return {Errc::unsupported, redact_urls(dir) + ": unsafe file name '" + name + "'"};
      out.push_back({prefix + name, dir + href});
    }
  }
  return Status::Ok();
}

// Files of hf://datasets/ORG/NAME[@REV][/PATH]; `record` gets the URL the
// files' names resolve under.
Status list_hub(const std::string& loc, std::vector<RemoteFile>& out, std::string& record, bool& single) {
  std::string rest = loc.substr(std::string("hf://datasets/").size());
  size_t a = rest.find('/');
  if (a == std::string::npos) return {Errc::invalid, loc + ": expected hf://datasets/ORG/NAME[@REVISION][/PATH]"};
  size_t b = rest.find('/', a + 1);
  std::string org = rest.substr(0, a), name = rest.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
  std::string path = b == std::string::npos ? "" : rest.substr(b + 1), rev = "main";
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (size_t at = name.find('@'); at != std::string::npos) { rev = name.substr(at + 1); name = name.substr(0, at); }
  auto ok = [](const std::string& s) {
    if (s.empty() || s == "." || s == "..") return false;
    for (char c : s)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
    return true;
  };
  if (!ok(org) || !ok(name) || rev.empty() || rev.find("..") != std::string::npos || rev.find('/') != std::string::npos ||
      (!path.empty() && !is_safe_relative_path(path)))
    return {Errc::invalid, loc + ": not a valid hf://datasets/ORG/NAME[@REVISION][/PATH]"};
  const std::string repo = hf_endpoint() + "/datasets/" + org + "/" + name + "/resolve/" + rev;
  auto listing = http_get_text(hf_endpoint() + "/api/datasets/" + org + "/" + name + "/tree/" + rev +
                               (path.empty() ? "" : "/" + path) + "?recursive=true");
  json j = listing.ok() ? json::parse(*listing, nullptr, false) : json();
  if (!listing.ok() && listing.status().code() != Errc::not_found) return listing.status();
  if (!j.is_array()) {
    // Not a folder: PATH names one file.
    if (path.empty()) return {Errc::invalid, loc + ": the hub lists no files (" + (listing.ok() ? "not a JSON list" : listing.status().message()) + ")"};
    const std::string file = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
    out.push_back({file, repo + "/" + path});
    single = true;
    record = repo + (path.size() > file.size() ? "/" + path.substr(0, path.size() - file.size() - 1) : "");
    return Status::Ok();
  }
  for (auto& e : j) {
    if (!e.is_object() || e.value("type", "") != "file" || !e.contains("path") || !e["path"].is_string()) continue;
    std::string p = e["path"].get<std::string>();
    std::string rel = path.empty() ? p : p.rfind(path + "/", 0) == 0 ? p.substr(path.size() + 1) : "";
    if (rel.empty() || !is_safe_relative_path(rel)) return {Errc::unsupported, loc + ": unsafe file name '" + p + "' in the hub's listing"};
    if (fs::path(rel).filename().string().rfind(".git", 0) == 0) continue;  // .gitattributes
    out.push_back({rel, repo + "/" + p});
  }
  if (out.empty()) return {Errc::invalid, loc + ": the hub lists no files"};
  record = repo + (path.empty() ? "" : "/" + path);
  return Status::Ok();
}

// A downloaded data set: removed with the object.
struct Download {
  std::string dir;
  ~Download() {
    std::error_code ec;
    if (!dir.empty()) fs::remove_all(dir, ec);
  }
};

// The local path to build from for `loc` (itself when local). `record`
// gets the location to record for a remote base.
Result<std::string> local_copy(const std::string& loc, const std::string& near, std::unique_ptr<Download>& keep,
                               std::string& record) {
  if (!remote(loc)) return loc;
  std::vector<RemoteFile> files;
  bool single = false;
  if (is_dataset_hub(loc)) {
    TP_RETURN_IF_ERROR(list_hub(loc, files, record, single));
  } else {
    std::string u = loc.substr(0, loc.find_first_of("?#"));
    if (u.back() == '/') {
      TP_RETURN_IF_ERROR(list_html(loc, "", 0, files));
      if (files.empty()) return Status{Errc::invalid, redact_urls(loc) + ": the listing links no files"};
      record = loc;
    } else {
      std::string name = url_decode(u.substr(u.rfind('/') + 1));
      if (!is_safe_relative_path(name)) return Status{Errc::invalid, redact_urls(loc) + ": no file name in the URL"};
      files.push_back({name, loc});
      record = u.substr(0, u.rfind('/'));
      single = true;
    }
  }
  auto parent = download_parent(near);
  if (!parent.ok()) return parent.status();
  std::string tmpl = (fs::path(*parent) / ".tenpak-download-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) return Status{Errc::io, tmpl + ": cannot create a download directory: " + std::strerror(errno)};
  keep = std::make_unique<Download>();
  keep->dir = tmpl;
  std::fprintf(stderr, "downloading %zu file(s) from %s ...\n", files.size(), redact_urls(loc).c_str());
  std::vector<uint8_t> buf(8u << 20);
  for (auto& f : files) {
    auto src = open_source(f.url);
    if (!src.ok()) {
      // HttpSource's errors start with the URL; one that does not (libcurl not loaded) gets it here.
      const std::string shown = redact_urls(f.url), msg = src.status().message();
      return msg.find(shown) == std::string::npos ? Status{src.status().code(), shown + ": " + msg} : src.status();
    }
    const std::string path = tmpl + "/" + f.name;
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    OutFileWriter w;
    TP_RETURN_IF_ERROR(w.open(path));
    for (uint64_t off = 0, size = (*src)->size(); off < size;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off));
      TP_RETURN_IF_ERROR((*src)->read(off, n, buf.data()));
      TP_RETURN_IF_ERROR(w.write(buf.data(), n));
      off += n;
    }
    TP_RETURN_IF_ERROR(w.close());
  }
  return single ? tmpl + "/" + files[0].name : tmpl;
}

json report_json(const DatasetBuildReport& r) {
  const BuildReport& b = r.build;
  json j = {{"derived_bytes", b.finetune_bytes},
            {"delta_bytes", b.delta_bytes},
            {"ratio", b.finetune_bytes ? static_cast<double>(b.delta_bytes) / b.finetune_bytes : 0.0},
            {"index_bytes", b.index_bytes},
            {"frames", b.frames},
            {"seconds", b.seconds},
            {"estimated", b.estimated}};
  json files = json::array();
  for (size_t i = 0; i < b.files.size(); ++i) {
    const auto& f = b.files[i];
    const auto& d = r.files[i];
    files.push_back({{"name", f.name}, {"bytes", f.out_bytes}, {"delta_bytes", f.delta_bytes}, {"frames", f.frames},
                     {"mode", d.mode}, {"base", d.base}, {"records", d.records}, {"copied", d.exact},
                     {"edited", d.edited}, {"new", d.fresh}});
  }
  j["files"] = files;
  return j;
}

void print_report(const DatasetBuildReport& r, const std::string& verb) {
  const BuildReport& b = r.build;
  double ratio = b.finetune_bytes ? static_cast<double>(b.delta_bytes) / b.finetune_bytes : 0.0;
  std::printf("%s: %s derived -> %s delta (%.4f of the derived set, %.1f%% saved) in %.2f s (%.1f MB/s)\n",
              verb.c_str(), human_bytes(b.finetune_bytes).c_str(), human_bytes(b.delta_bytes).c_str(), ratio,
              (1 - ratio) * 100, b.seconds, b.seconds > 0 ? b.finetune_bytes / b.seconds / 1e6 : 0.0);
  for (size_t i = 0; i < b.files.size(); ++i) {
    const auto& f = b.files[i];
    const auto& d = r.files[i];
    std::printf("  %-40s %10s -> %10s  %-16s vs %-24s %llu units: %llu copied, %llu edited, %llu new\n",
                f.name.c_str(), human_bytes(f.out_bytes).c_str(), human_bytes(f.delta_bytes).c_str(), d.mode.c_str(),
                d.base.empty() ? "(no base file)" : d.base.c_str(), (unsigned long long)d.records,
                (unsigned long long)d.exact, (unsigned long long)d.edited, (unsigned long long)d.fresh);
  }
}

struct Opts {
  std::string base, derived, out, dir;
  int level = 19;
  bool fast = false;
  bool no_words = false;
  unsigned sample = 8;
  bool json_out = false;
  unsigned threads = 0;
  std::vector<std::string> base_locations;
};

int do_build(const Opts& o, bool estimate) {
  DatasetBuildOptions b;
  b.zstd_level = o.fast ? 6 : o.level;
  b.word_literals = !o.no_words;
  b.threads = o.threads;
  b.base_locations = o.base_locations;
  // The library prints nothing: a file not coded as its kind asks (its base
  // has more records than matching numbers) is said here.
  b.log = [](const std::string& l) { std::fprintf(stderr, "tenpak: %s\n", l.c_str()); };
  if (estimate) b.sample_every = o.sample;
  // Remote inputs are downloaded next to the output (estimate: $TMPDIR).
  const std::string near = estimate ? std::string() : o.out;  // download_parent
  std::unique_ptr<Download> base_dl, der_dl;
  std::string base_record, der_record;
  auto base = local_copy(o.base, near, base_dl, base_record);
  if (!base.ok()) return fail(base.status());
  auto derived = local_copy(o.derived, near, der_dl, der_record);
  if (!derived.ok()) return fail(derived.status());
  if (b.base_locations.empty() && remote(o.base)) b.base_locations = {base_record};
  // A delta is published: it never records credentials.
  for (auto& l : b.base_locations)
    if (redact_urls(l) != l)
      return fail(Status{Errc::unsupported, redact_urls(l) + ": a base location with credentials (user:password@) would be "
                                            "written into the delta; record it without them (--base-location) and give "
                                            "them at apply or mount time (--base)"});
  ProgressBar bar(estimate ? "estimate" : "build");
  b.progress = [&](uint64_t d, uint64_t t) { bar.update(d, t); };
  auto r = estimate ? estimate_dataset_delta(*base, *derived, b) : build_dataset_delta(*base, *derived, o.out, b);
  bar.finish();
  if (!r.ok()) return fail(r.status());
  if (o.json_out) std::cout << json_text(report_json(*r), 2) << "\n";
  else print_report(*r, estimate ? "estimate" : "built " + o.out);
  return kOk;
}

void add_build(CLI::App* b, Opts& o, int& rc, bool output_required = true) {
  b->add_option("BASE", o.base,
                 "Base data set: a file or a directory of files, an http(s) URL of a file or of a directory "
                 "listing (ends with '/'), or hf://datasets/ORG/NAME[@REVISION][/PATH] (downloaded first, next to "
                 "the output; a remote base is recorded as the URL its files resolve under)")
      ->required();
  b->add_option("DERIVED", o.derived, "Derived data set: the same kinds of location as BASE")->required();
  b->add_option("-o,--output", o.out, "Delta directory to create (must not exist or be empty)")->required();
  b->add_option("-l,--level", o.level, "zstd level for new bytes (1-19; default 19)")->check(CLI::Range(1, 19));
  b->add_flag("--fast", o.fast, "zstd level 6 for new bytes: builds several times faster, a larger delta");
  b->add_flag("--no-words", o.no_words,
              "never word-code new text (codec 10 method bit 4, kept per frame only where smaller than zstd; "
              "rebuilds such frames slower)");
  b->add_option("--base-location", o.base_locations,
                "Where the base can be found, recorded in the delta; repeat for mirrors. Default: the absolute "
                "path of BASE (its directory for a file)");
  b->add_flag("--json", o.json_out, "Print a JSON report on stdout");
  b->add_option("-j,--threads", o.threads, "Worker threads (default: all cores)");
  b->callback([&o, &rc] {
    tune_malloc_for_rebuilds();
    rc = do_build(o, false);
  });
}

}  // namespace

void add_dataset_commands(CLI::App& app, int& rc) {
  static Opts o;
  auto* ds = app.add_subcommand("dataset", "Build, apply, verify, inspect and estimate data set deltas");
  ds->require_subcommand(1);
  auto common = [&](CLI::App* s) {
    s->add_flag("--json", o.json_out, "Print a JSON report on stdout");
    s->add_option("-j,--threads", o.threads, "Worker threads (default: all cores)");
  };
  add_build(ds->add_subcommand("build", "Build a delta of DERIVED against BASE (records matched, new bytes compressed "
                                        "against the base)"),
            o, rc);

  auto* a = ds->add_subcommand("apply", "Rebuild the derived data set from DELTA and its base, to disk");
  a->add_option("DELTA", o.dir, "Delta directory (path, http(s) URL or hub id)")->required();
  a->add_option("--base", o.base, "Base data set (default: the locations recorded in the delta)");
  a->add_option("-o,--output", o.out, "Output directory to create (must not exist or be empty)")->required();
  common(a);
  a->callback([&] {
    tune_malloc_for_rebuilds();
    rc = run_delta_apply(o.dir, o.base, o.out, o.json_out, o.threads);
  });

  auto* v = ds->add_subcommand("verify", "Rebuild in memory and check every frame hash and file sha256");
  v->add_option("DELTA", o.dir, "Delta directory (path, http(s) URL or hub id)")->required();
  v->add_option("--base", o.base, "Base data set (default: the locations recorded in the delta)");
  common(v);
  v->callback([&] {
    tune_malloc_for_rebuilds();
    rc = run_delta_apply(o.dir, o.base, "", o.json_out, o.threads);
  });

  auto* i = ds->add_subcommand("inspect", "Show per file codecs and sizes");
  i->add_option("DELTA", o.dir, "Delta directory (path, http(s) URL or hub id)")->required();
  common(i);
  i->callback([&] { rc = run_delta_inspect(o.dir, o.json_out, o.threads); });

  auto* e = ds->add_subcommand("estimate", "Estimate the delta size without writing, by encoding one frame in N");
  e->add_option("BASE", o.base, "Base data set (path, http(s) URL, hf://datasets/ORG/NAME[@REV]; downloaded to $TMPDIR)")->required();
  e->add_option("DERIVED", o.derived, "Derived data set (the same kinds of location)")->required();
  e->add_option("-s,--sample", o.sample, "Encode one frame in N (1 encodes all)")->check(CLI::Range(1, 1000));
  e->add_option("-l,--level", o.level, "zstd level for new bytes")->check(CLI::Range(1, 19));
  common(e);
  e->callback([&] { rc = do_build(o, true); });

  // The seeds' spellings of `dataset build`.
  CLI::App* delta = nullptr;
  try {
    delta = app.get_subcommand("delta");
  } catch (const CLI::OptionNotFound&) {
  }
  if (delta)
    add_build(delta->add_subcommand("compress", "Same as `tenpak dataset build BASE DERIVED -o DIR`"), o, rc);
  auto* dd = app.add_subcommand("delta-dataset", "Same as `tenpak dataset` (the spelling of earlier scripts)");
  dd->require_subcommand(1);
  add_build(dd->add_subcommand("compress", "Same as `tenpak dataset build BASE DERIVED --output DIR`"), o, rc);
}

}  // namespace tenpak::cli
