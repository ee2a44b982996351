#include "pickle_reader.h"

#include <cstring>
#include <unordered_map>

namespace tenpak::pickle {

Node* Graph::make(Kind k) {
  nodes_.push_back(std::make_unique<Node>());
  nodes_.back()->kind = k;
  return nodes_.back().get();
}

Node* dict_get(const Node* d, const std::string& key) {
  if (!d || (d->kind != Kind::dict && d->kind != Kind::object)) return nullptr;
  Node* found = nullptr;
  for (size_t k = 0; k + 1 < d->items.size(); k += 2)
    if (d->items[k]->kind == Kind::str && d->items[k]->str == key) found = d->items[k + 1];
  return found;
}

namespace {

const char* opcode_name(uint8_t op) {
  switch (op) {
    case '(': return "MARK"; case '.': return "STOP"; case '0': return "POP"; case '1': return "POP_MARK";
    case '2': return "DUP"; case 'F': return "FLOAT"; case 'I': return "INT"; case 'J': return "BININT";
    case 'K': return "BININT1"; case 'L': return "LONG"; case 'M': return "BININT2"; case 'N': return "NONE";
    case 'P': return "PERSID"; case 'Q': return "BINPERSID"; case 'R': return "REDUCE"; case 'S': return "STRING";
    case 'T': return "BINSTRING"; case 'U': return "SHORT_BINSTRING"; case 'V': return "UNICODE";
    case 'X': return "BINUNICODE"; case 'a': return "APPEND"; case 'b': return "BUILD"; case 'c': return "GLOBAL";
    case 'd': return "DICT"; case '}': return "EMPTY_DICT"; case 'e': return "APPENDS"; case 'g': return "GET";
    case 'h': return "BINGET"; case 'i': return "INST"; case 'j': return "LONG_BINGET"; case 'l': return "LIST";
    case ']': return "EMPTY_LIST"; case 'o': return "OBJ"; case 'p': return "PUT"; case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT"; case 's': return "SETITEM"; case 't': return "TUPLE"; case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS"; case 'G': return "BINFLOAT"; case 0x80: return "PROTO"; case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1"; case 0x83: return "EXT2"; case 0x84: return "EXT4"; case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2"; case 0x87: return "TUPLE3"; case 0x88: return "NEWTRUE"; case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1"; case 0x8b: return "LONG4"; case 'B': return "BINBYTES"; case 'C': return "SHORT_BINBYTES";
    case 0x8c: return "SHORT_BINUNICODE"; case 0x8d: return "BINUNICODE8"; case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET"; case 0x90: return "ADDITEMS"; case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX"; case 0x93: return "STACK_GLOBAL"; case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME"; case 0x96: return "BYTEARRAY8"; case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
  }
  return nullptr;
}

// What a REDUCE of a global does; everything not listed is refused.
enum class Call { refuse, ordered_dict, set, frozenset, tuple, codecs_encode, bytearray, rebuild_tensor_v2,
                  rebuild_tensor, rebuild_parameter, rebuild_from_type_v2, reconstructor, opaque };

Call call_kind(const std::string& m, const std::string& n) {
  if (m == "collections" && n == "OrderedDict") return Call::ordered_dict;
  if ((m == "builtins" || m == "__builtin__") && n == "set") return Call::set;
  if ((m == "builtins" || m == "__builtin__") && n == "frozenset") return Call::frozenset;
  if ((m == "builtins" || m == "__builtin__") && n == "bytearray") return Call::bytearray;
  if (m == "torch" && n == "Size") return Call::tuple;
  if (m == "_codecs" && n == "encode") return Call::codecs_encode;
  if (m == "torch._utils") {
    if (n == "_rebuild_tensor_v2") return Call::rebuild_tensor_v2;
    if (n == "_rebuild_tensor") return Call::rebuild_tensor;
    if (n == "_rebuild_parameter" || n == "_rebuild_parameter_with_state") return Call::rebuild_parameter;
  }
  if (m == "torch._tensor" && n == "_rebuild_from_type_v2") return Call::rebuild_from_type_v2;
  if (m == "copyreg" && n == "_reconstructor") return Call::reconstructor;
  if ((m == "numpy.core.multiarray" || m == "numpy._core.multiarray") && (n == "scalar" || n == "_reconstruct"))
    return Call::opaque;
  if (m == "numpy" && n == "dtype") return Call::opaque;
  if (m == "torch" && n == "device") return Call::opaque;
  // Plain values in training options (YOLOv5's opt.save_dir, dates).
  if (m == "pathlib" && (n == "Path" || n == "PosixPath" || n == "WindowsPath" || n == "PurePath" ||
                         n == "PurePosixPath" || n == "PureWindowsPath"))
    return Call::opaque;
  if (m == "datetime" && (n == "datetime" || n == "date" || n == "time" || n == "timedelta")) return Call::opaque;
  return Call::refuse;
}

class Unpickler {
 public:
  Unpickler(const uint8_t* d, size_t n, const std::string& file, Graph& g, const Limits& lim)
      : p_(d), end_(d + n), begin_(d), file_(file), g_(g), lim_(lim) {}

  Status run() {
    while (true) {
      if (p_ >= end_) return corrupt("pickle ends without STOP");
      op_at_ = static_cast<size_t>(p_ - begin_);
      uint8_t op = *p_++;
      bool stop = false;
      TP_RETURN_IF_ERROR(step(op, stop));
      if (stop) return Status::Ok();
    }
  }

 private:
  Status corrupt(const std::string& why) const {
    return Status{Errc::corrupt, file_ + ": data.pkl at byte " + std::to_string(op_at_) + ": " + why};
  }
  Status refuse(const std::string& why) const {
    return Status{Errc::unsupported, file_ + ": data.pkl at byte " + std::to_string(op_at_) + ": " + why};
  }

  Status need(uint64_t n) const {
    if (static_cast<uint64_t>(end_ - p_) < n) return corrupt("truncated pickle");
    return Status::Ok();
  }
  uint64_t le(int n) {
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | p_[k];
    p_ += n;
    return v;
  }
  Result<Node*> make(Kind k) {
    if (g_.size() >= lim_.max_nodes) return corrupt("more than " + std::to_string(lim_.max_nodes) + " objects");
    return g_.make(k);
  }
  Status push(Node* n) {
    if (stack_.size() >= lim_.max_stack) return corrupt("stack deeper than " + std::to_string(lim_.max_stack));
    stack_.push_back(n);
    return Status::Ok();
  }
  Result<Node*> pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) return corrupt("pop from an empty stack");
    Node* n = stack_.back();
    stack_.pop_back();
    return n;
  }
  Result<Node*> top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) return corrupt("empty stack");
    return stack_.back();
  }
  // Pops everything above the last MARK (and the mark).
  Result<std::vector<Node*>> pop_mark() {
    if (marks_.empty()) return corrupt("no MARK on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Node*> items(stack_.begin() + static_cast<ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  Status push_new(Kind k, Node** out = nullptr) {
    auto n = make(k);
    if (!n.ok()) return n.status();
    if (out) *out = *n;
    return push(*n);
  }
  Status push_int(int64_t v) {
    Node* n = nullptr;
    TP_RETURN_IF_ERROR(push_new(Kind::integer, &n));
    n->i = v;
    return Status::Ok();
  }
  Status push_string(Kind k, uint64_t len) {
    if (len > lim_.max_string) return corrupt("string of " + std::to_string(len) + " bytes is over the limit");
    TP_RETURN_IF_ERROR(need(len));
    Node* n = nullptr;
    TP_RETURN_IF_ERROR(push_new(k, &n));
    n->str.assign(reinterpret_cast<const char*>(p_), len);
    p_ += len;
    return Status::Ok();
  }
  Status memo_put(uint64_t idx) {
    auto t = top();
    if (!t.ok()) return t.status();
    if (idx >= lim_.max_memo) return corrupt("memo index " + std::to_string(idx) + " over the limit");
    if (memo_.size() >= lim_.max_memo && !memo_.count(idx)) return corrupt("memo over the limit");
    memo_[idx] = *t;
    return Status::Ok();
  }
  Status memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) return corrupt("memo index " + std::to_string(idx) + " was never stored");
    return push(it->second);
  }
  Status add_pairs(Node* target, const std::vector<Node*>& kv) {
    if (kv.size() % 2) return corrupt("SETITEMS with an odd number of items");
    if (target->kind != Kind::dict && target->kind != Kind::object)
      return corrupt("SETITEM on something that is not a dict");
    target->items.insert(target->items.end(), kv.begin(), kv.end());
    return Status::Ok();
  }
  Status add_items(Node* target, const std::vector<Node*>& v) {
    if (target->kind != Kind::list && target->kind != Kind::object) return corrupt("APPEND on something that is not a list");
    target->items.insert(target->items.end(), v.begin(), v.end());
    return Status::Ok();
  }
  Status global(const std::string& mod, const std::string& name) {
    if (mod.empty() || name.empty()) return corrupt("empty GLOBAL name");
    Node* n = nullptr;
    TP_RETURN_IF_ERROR(push_new(Kind::global, &n));
    n->str = mod;
    n->str2 = name;
    return Status::Ok();
  }
  Result<std::string> read_line() {
    const uint8_t* nl = static_cast<const uint8_t*>(std::memchr(p_, '\n', static_cast<size_t>(end_ - p_)));
    if (!nl) return corrupt("truncated GLOBAL");
    std::string s(reinterpret_cast<const char*>(p_), static_cast<size_t>(nl - p_));
    p_ = nl + 1;
    return s;
  }

  Status step(uint8_t op, bool& stop);
  Status reduce();
  Status build();
  Status persid();
  Result<Node*> rebuild_tensor(Node* args, bool v2);

  const uint8_t* p_;
  const uint8_t* end_;
  const uint8_t* begin_;
  size_t op_at_ = 0;
  const std::string& file_;
  Graph& g_;
  const Limits& lim_;
  std::vector<Node*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Node*> memo_;
  Node *none_ = nullptr, *true_ = nullptr, *false_ = nullptr;
};

Status Unpickler::step(uint8_t op, bool& stop) {
  switch (op) {
    case 0x80: {  // PROTO
      TP_RETURN_IF_ERROR(need(1));
      int v = *p_++;
      if (v < 2 || v > 5) return refuse("pickle protocol " + std::to_string(v) + " is not supported (2-5 are)");
      return Status::Ok();
    }
    case 0x95:  // FRAME: framing is only a hint for buffering; opcodes run across it.
      TP_RETURN_IF_ERROR(need(8));
      p_ += 8;
      return Status::Ok();
    case '.': {
      auto r = pop();
      if (!r.ok()) return r.status();
      g_.root = *r;
      stop = true;
      return Status::Ok();
    }
    case '(':
      if (marks_.size() >= lim_.max_marks) return corrupt("MARKs nested deeper than " + std::to_string(lim_.max_marks));
      marks_.push_back(stack_.size());
      return Status::Ok();
    case '0': return pop().status();
    case '1': return pop_mark().status();
    case '2': {
      auto t = top();
      if (!t.ok()) return t.status();
      return push(*t);
    }
    case 'N': case 0x88: case 0x89: {  // shared constants: nothing ever mutates them
      Node*& c = op == 'N' ? none_ : op == 0x88 ? true_ : false_;
      if (!c) {
        auto n = make(op == 'N' ? Kind::none : Kind::boolean);
        if (!n.ok()) return n.status();
        c = *n;
        c->i = op == 0x88;
      }
      return push(c);
    }
    case 'J': TP_RETURN_IF_ERROR(need(4)); return push_int(static_cast<int32_t>(le(4)));
    case 'K': TP_RETURN_IF_ERROR(need(1)); return push_int(static_cast<int64_t>(le(1)));
    case 'M': TP_RETURN_IF_ERROR(need(2)); return push_int(static_cast<int64_t>(le(2)));
    case 0x8a: case 0x8b: {  // LONG1, LONG4: little-endian two's complement
      int lw = op == 0x8a ? 1 : 4;
      TP_RETURN_IF_ERROR(need(lw));
      uint64_t n = le(lw);
      if (n > lim_.max_string) return corrupt("LONG of " + std::to_string(n) + " bytes");
      TP_RETURN_IF_ERROR(need(n));
      if (n > 8) {  // does not fit int64: kept as an opaque big integer
        p_ += n;
        return push_new(Kind::bigint);
      }
      uint64_t v = n ? le(static_cast<int>(n)) : 0;
      if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign-extend
      return push_int(static_cast<int64_t>(v));
    }
    case 'G': {
      TP_RETURN_IF_ERROR(need(8));
      uint64_t bits = 0;
      for (int k = 0; k < 8; ++k) bits = (bits << 8) | p_[k];  // big-endian
      p_ += 8;
      Node* n = nullptr;
      TP_RETURN_IF_ERROR(push_new(Kind::floating, &n));
      std::memcpy(&n->f, &bits, 8);
      return Status::Ok();
    }
    case 'X': TP_RETURN_IF_ERROR(need(4)); return push_string(Kind::str, le(4));
    case 0x8c: TP_RETURN_IF_ERROR(need(1)); return push_string(Kind::str, le(1));
    case 0x8d: TP_RETURN_IF_ERROR(need(8)); return push_string(Kind::str, le(8));
    case 'B': TP_RETURN_IF_ERROR(need(4)); return push_string(Kind::bytes, le(4));
    case 'C': TP_RETURN_IF_ERROR(need(1)); return push_string(Kind::bytes, le(1));
    case 0x8e: case 0x96: TP_RETURN_IF_ERROR(need(8)); return push_string(Kind::bytes, le(8));
    case 'T': TP_RETURN_IF_ERROR(need(4)); return push_string(Kind::bytes, le(4));   // py2 str
    case 'U': TP_RETURN_IF_ERROR(need(1)); return push_string(Kind::bytes, le(1));
    case ')': return push_new(Kind::tuple);
    case ']': return push_new(Kind::list);
    case '}': return push_new(Kind::dict);
    case 0x8f: return push_new(Kind::set);
    case 't': case 'l': case 0x91: case 'd': {  // TUPLE, LIST, FROZENSET, DICT from the marked items
      auto items = pop_mark();
      if (!items.ok()) return items.status();
      Kind k = op == 't' ? Kind::tuple : op == 'l' ? Kind::list : op == 'd' ? Kind::dict : Kind::set;
      if (k == Kind::dict && items->size() % 2) return corrupt("DICT with an odd number of items");
      Node* n = nullptr;
      TP_RETURN_IF_ERROR(push_new(k, &n));
      n->items = std::move(*items);
      return Status::Ok();
    }
    case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
      size_t k = op - 0x84;
      std::vector<Node*> items(k);
      for (size_t j = k; j-- > 0;) {
        auto r = pop();
        if (!r.ok()) return r.status();
        items[j] = *r;
      }
      Node* n = nullptr;
      TP_RETURN_IF_ERROR(push_new(Kind::tuple, &n));
      n->items = std::move(items);
      return Status::Ok();
    }
    case 'a': {
      auto v = pop();
      if (!v.ok()) return v.status();
      auto l = top();
      if (!l.ok()) return l.status();
      return add_items(*l, {*v});
    }
    case 'e': {
      auto items = pop_mark();
      if (!items.ok()) return items.status();
      auto l = top();
      if (!l.ok()) return l.status();
      return add_items(*l, *items);
    }
    case 's': {
      auto v = pop();
      if (!v.ok()) return v.status();
      auto k = pop();
      if (!k.ok()) return k.status();
      auto d = top();
      if (!d.ok()) return d.status();
      return add_pairs(*d, {*k, *v});
    }
    case 'u': {
      auto items = pop_mark();
      if (!items.ok()) return items.status();
      auto d = top();
      if (!d.ok()) return d.status();
      return add_pairs(*d, *items);
    }
    case 0x90: {  // ADDITEMS
      auto items = pop_mark();
      if (!items.ok()) return items.status();
      auto s = top();
      if (!s.ok()) return s.status();
      if ((*s)->kind != Kind::set) return corrupt("ADDITEMS on something that is not a set");
      (*s)->items.insert((*s)->items.end(), items->begin(), items->end());
      return Status::Ok();
    }
    case 'h': TP_RETURN_IF_ERROR(need(1)); return memo_get(le(1));
    case 'j': TP_RETURN_IF_ERROR(need(4)); return memo_get(le(4));
    case 'q': TP_RETURN_IF_ERROR(need(1)); return memo_put(le(1));
    case 'r': TP_RETURN_IF_ERROR(need(4)); return memo_put(le(4));
    case 0x94: return memo_put(memo_.size());
    case 'c': {
      auto m = read_line();
      if (!m.ok()) return m.status();
      auto n = read_line();
      if (!n.ok()) return n.status();
      return global(*m, *n);
    }
    case 0x93: {  // STACK_GLOBAL
      auto n = pop();
      if (!n.ok()) return n.status();
      auto m = pop();
      if (!m.ok()) return m.status();
      if ((*m)->kind != Kind::str || (*n)->kind != Kind::str) return corrupt("STACK_GLOBAL needs two strings");
      return global((*m)->str, (*n)->str);
    }
    case 'R': return reduce();
    case 'b': return build();
    case 0x81: {  // NEWOBJ cls args: an opaque object of class cls, never instantiated
      auto args = pop();
      if (!args.ok()) return args.status();
      auto cls = pop();
      if (!cls.ok()) return cls.status();
      if ((*cls)->kind != Kind::global) return corrupt("NEWOBJ of something that is not a class");
      if ((*args)->kind != Kind::tuple) return corrupt("NEWOBJ arguments are not a tuple");
      Node* o = nullptr;
      TP_RETURN_IF_ERROR(push_new(Kind::object, &o));
      o->ref = *cls;
      return Status::Ok();
    }
    case 'Q': return persid();
  }
  const char* name = opcode_name(op);
  if (name) return refuse(std::string("pickle opcode ") + name + " is not supported by the restricted reader");
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02x", op);
  return corrupt(std::string("unknown pickle opcode ") + hex);
}

Status Unpickler::reduce() {
  auto args = pop();
  if (!args.ok()) return args.status();
  auto fn = pop();
  if (!fn.ok()) return fn.status();
  Node* f = *fn;
  Node* a = *args;
  if (f->kind != Kind::global) return refuse("pickle asks to call a non-global object: refused");
  Call c = call_kind(f->str, f->str2);
  if (c == Call::refuse) return refuse("pickle asks to call " + f->qualname() + ": refused");
  if (a->kind != Kind::tuple) return corrupt("arguments of " + f->qualname() + " are not a tuple");
  const auto& av = a->items;
  Node* out = nullptr;
  switch (c) {
    case Call::ordered_dict: {
      auto n = make(Kind::dict);
      if (!n.ok()) return n.status();
      out = *n;
      if (!av.empty()) {  // OrderedDict([(k, v), ...])
        if (av.size() != 1 || av[0]->kind != Kind::list) return corrupt("OrderedDict arguments not understood");
        for (Node* kv : av[0]->items) {
          if (kv->kind != Kind::tuple || kv->items.size() != 2) return corrupt("OrderedDict item is not a pair");
          out->items.push_back(kv->items[0]);
          out->items.push_back(kv->items[1]);
        }
      }
      break;
    }
    case Call::set: case Call::frozenset: {
      auto n = make(Kind::set);
      if (!n.ok()) return n.status();
      out = *n;
      if (!av.empty()) {
        if (av.size() != 1 || (av[0]->kind != Kind::list && av[0]->kind != Kind::tuple && av[0]->kind != Kind::set))
          return corrupt(f->qualname() + " arguments not understood");
        out->items = av[0]->items;
      }
      break;
    }
    case Call::tuple: {
      if (av.size() != 1 || av[0]->kind != Kind::tuple) return corrupt("torch.Size arguments not understood");
      out = av[0];
      break;
    }
    case Call::codecs_encode: case Call::bytearray: {
      auto n = make(Kind::bytes);
      if (!n.ok()) return n.status();
      out = *n;
      if (!av.empty() && (av[0]->kind == Kind::str || av[0]->kind == Kind::bytes)) out->str = av[0]->str;
      break;
    }
    case Call::rebuild_tensor_v2: case Call::rebuild_tensor: {
      auto t = rebuild_tensor(a, c == Call::rebuild_tensor_v2);
      if (!t.ok()) return t.status();
      out = *t;
      break;
    }
    case Call::rebuild_parameter: {
      if (av.empty() || av[0]->kind != Kind::tensor) return corrupt(f->qualname() + " without a tensor");
      out = av[0];
      break;
    }
    case Call::rebuild_from_type_v2: {
      // (func, new_type, args, state): the tensor is func(*args) for an allowlisted func.
      if (av.size() < 3 || av[0]->kind != Kind::global || av[2]->kind != Kind::tuple)
        return corrupt("_rebuild_from_type_v2 arguments not understood");
      Call inner = call_kind(av[0]->str, av[0]->str2);
      if (inner != Call::rebuild_tensor_v2 && inner != Call::rebuild_tensor && inner != Call::rebuild_parameter)
        return refuse("pickle asks to call " + av[0]->qualname() + ": refused");
      if (inner == Call::rebuild_parameter) {
        if (av[2]->items.empty() || av[2]->items[0]->kind != Kind::tensor) return corrupt("parameter without a tensor");
        out = av[2]->items[0];
      } else {
        auto t = rebuild_tensor(av[2], inner == Call::rebuild_tensor_v2);
        if (!t.ok()) return t.status();
        out = *t;
      }
      break;
    }
    case Call::reconstructor: {  // copyreg._reconstructor(cls, base, state)
      if (av.empty() || av[0]->kind != Kind::global) return corrupt("copyreg._reconstructor without a class");
      auto n = make(Kind::object);
      if (!n.ok()) return n.status();
      out = *n;
      out->ref = av[0];
      break;
    }
    case Call::opaque: {
      auto n = make(Kind::opaque);
      if (!n.ok()) return n.status();
      out = *n;
      out->ref = f;
      break;
    }
    case Call::refuse: break;
  }
  return push(out);
}

Status Unpickler::build() {
  auto state = pop();
  if (!state.ok()) return state.status();
  auto obj = top();
  if (!obj.ok()) return obj.status();
  Node* o = *obj;
  switch (o->kind) {
    case Kind::object: o->state = *state; return Status::Ok();
    // Attributes set on dicts (OrderedDict._metadata), tensors (Parameter
    // state) and opaque values are not needed to name or locate tensors.
    case Kind::dict: case Kind::tensor: case Kind::opaque: return Status::Ok();
    default: return corrupt("BUILD on a value that has no state");
  }
}

// ('storage', storage_type, key, location, numel)
Status Unpickler::persid() {
  auto pid = pop();
  if (!pid.ok()) return pid.status();
  const Node* t = *pid;
  if (t->kind != Kind::tuple || t->items.size() != 5 || t->items[0]->kind != Kind::str || t->items[0]->str != "storage")
    return refuse("persistent id that is not a torch storage");
  const Node* type = t->items[1];
  const Node* key = t->items[2];
  const Node* numel = t->items[4];
  if (type->kind != Kind::global) return corrupt("storage type is not a global");
  if (key->kind != Kind::str && key->kind != Kind::integer) return corrupt("storage key is not a string");
  if (numel->kind != Kind::integer || numel->i < 0) return corrupt("storage size is not a non-negative integer");
  static const std::pair<const char*, DType> kTypes[] = {
      {"DoubleStorage", DType::F64}, {"FloatStorage", DType::F32},   {"HalfStorage", DType::F16},
      {"BFloat16Storage", DType::BF16}, {"LongStorage", DType::I64}, {"IntStorage", DType::I32},
      {"ShortStorage", DType::I16},  {"CharStorage", DType::I8},     {"ByteStorage", DType::U8},
      {"BoolStorage", DType::BOOL},  {"UntypedStorage", DType::U8},
      // TypedStorage written with a dtype global instead of a legacy class
      {"float64", DType::F64}, {"double", DType::F64}, {"float32", DType::F32}, {"float", DType::F32},
      {"float16", DType::F16}, {"half", DType::F16}, {"bfloat16", DType::BF16}, {"int64", DType::I64},
      {"long", DType::I64}, {"int32", DType::I32}, {"int", DType::I32}, {"int16", DType::I16},
      {"short", DType::I16}, {"int8", DType::I8}, {"uint8", DType::U8}, {"bool", DType::BOOL},
      {"float8_e4m3fn", DType::F8_E4M3}, {"float8_e5m2", DType::F8_E5M2}, {"uint16", DType::U16},
      {"uint32", DType::U32}, {"uint64", DType::U64},
  };
  DType dt = DType::unknown;
  if (type->str == "torch" || type->str == "torch.cuda")
    for (auto& [n, d] : kTypes)
      if (type->str2 == n) dt = d;
  if (dt == DType::unknown) return refuse("storage type " + type->qualname() + " is not supported");
  auto s = make(Kind::storage);
  if (!s.ok()) return s.status();
  (*s)->dtype = dt;
  (*s)->str = key->kind == Kind::str ? key->str : std::to_string(key->i);
  (*s)->i = numel->i;
  return push(*s);
}

// _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
// _rebuild_tensor(storage, offset, size, stride)
Result<Node*> Unpickler::rebuild_tensor(Node* args, bool v2) {
  const auto& av = args->items;
  if (av.size() < 4 || (v2 && av.size() < 6)) return corrupt("tensor rebuild with too few arguments");
  if (av[0]->kind != Kind::storage) return corrupt("tensor rebuild without a storage");
  if (av[1]->kind != Kind::integer || av[1]->i < 0) return corrupt("tensor storage offset is not a non-negative integer");
  if (av[2]->kind != Kind::tuple || av[3]->kind != Kind::tuple || av[2]->items.size() != av[3]->items.size())
    return corrupt("tensor size and stride are not tuples of the same length");
  if (av[2]->items.size() > 64) return corrupt("tensor of rank over 64");
  auto t = make(Kind::tensor);
  if (!t.ok()) return t.status();
  Node* n = *t;
  n->ref = av[0];
  n->dtype = av[0]->dtype;
  n->i = av[1]->i;
  for (size_t k = 0; k < av[2]->items.size(); ++k) {
    const Node* d = av[2]->items[k];
    const Node* s = av[3]->items[k];
    if (d->kind != Kind::integer || d->i < 0 || s->kind != Kind::integer || s->i < 0)
      return corrupt("tensor size or stride is not a non-negative integer");
    n->shape.push_back(static_cast<uint64_t>(d->i));
    n->stride.push_back(static_cast<uint64_t>(s->i));
  }
  return n;
}

}  // namespace

Status unpickle(const uint8_t* data, size_t size, const std::string& file, Graph& g, const Limits& lim) {
  Unpickler u(data, size, file, g, lim);
  return u.run();
}

}  // namespace tenpak::pickle
