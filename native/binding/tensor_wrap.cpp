#include "tensor_wrap.h"

#include <cmath>
#include <string>

#include "../core/error.h"
#include "../core/host_reads.h"
#include "../ops/cast.h"

namespace rlfarm::binding {

void EnvState::release(napi_ref ref) {
  if (std::this_thread::get_id() == thread) {
    if (alive) napi_delete_reference(env, ref);
    return;
  }
  std::lock_guard<std::mutex> lock(mutex);
  if (alive) pending_releases.push_back(ref);
}

void EnvState::drain() {
  std::vector<napi_ref> refs;
  {
    std::lock_guard<std::mutex> lock(mutex);
    refs.swap(pending_releases);
  }
  for (napi_ref ref : refs) napi_delete_reference(env, ref);
}

AddonData& addon_data(Napi::Env env) {
  AddonData* data = env.GetInstanceData<AddonData>();
  if (data == nullptr) throw Napi::Error::New(env, "rlfarm: the native addon was not initialised in this thread");
  data->state->drain();
  return *data;
}

namespace {

// Keeps a JavaScript typed array (and so its buffer) alive while a Storage
// borrows its memory.
class JsMemoryOwner : public StorageOwner {
 public:
  JsMemoryOwner(std::shared_ptr<EnvState> state, napi_ref ref, void* data, size_t bytes)
      : state_(std::move(state)), ref_(ref), data_(data), bytes_(bytes) {}
  ~JsMemoryOwner() override { state_->release(ref_); }

  std::string invalid_reason() const override {
    if (std::this_thread::get_id() != state_->thread) return {};  // can only look from its own thread
    napi_value array;
    if (napi_get_reference_value(state_->env, ref_, &array) != napi_ok || array == nullptr) return {};
    napi_typedarray_type type;
    size_t length;
    void* data = nullptr;
    napi_value buffer;
    size_t offset;
    if (napi_get_typedarray_info(state_->env, array, &type, &length, &data, &buffer, &offset) != napi_ok) return {};
    if (data != data_ || length * typed_array_element_size(type) < bytes_) {
      return "the ArrayBuffer under this tensor was detached (transferred to another thread?), so its memory is "
             "gone; make the tensor again from live memory";
    }
    return {};
  }

  napi_value value(napi_env env) const {
    napi_value array = nullptr;
    if (env != state_->env || napi_get_reference_value(env, ref_, &array) != napi_ok) return nullptr;
    return array;
  }

  static size_t typed_array_element_size(napi_typedarray_type type) {
    switch (type) {
      case napi_int8_array:
      case napi_uint8_array:
      case napi_uint8_clamped_array: return 1;
      case napi_int16_array:
      case napi_uint16_array: return 2;
      case napi_float64_array:
      case napi_bigint64_array:
      case napi_biguint64_array: return 8;
      default: return 4;
    }
  }

 private:
  std::shared_ptr<EnvState> state_;
  napi_ref ref_;
  void* data_;
  size_t bytes_;
};

napi_typedarray_type typed_array_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return napi_float32_array;
    case DType::bf16: return napi_uint16_array;
    case DType::i32: return napi_int32_array;
    case DType::u8: return napi_uint8_array;
  }
  return napi_uint8_array;
}

const char* typed_array_name(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "typed array";
  }
}

Device device_arg(const Napi::Value& value, const char* what) {
  if (value.IsUndefined() || value.IsNull()) return Device::host();
  return parse_device(string_arg(value, what), what);
}

}  // namespace

Shape shape_from_js(const Napi::Value& value, const char* what) {
  if (!value.IsArray()) fail(what, ": shape must be an array of non-negative integers");
  const Napi::Array array = value.As<Napi::Array>();
  Shape shape;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const Napi::Value item = array.Get(i);
    const double d = item.IsNumber() ? item.As<Napi::Number>().DoubleValue() : -1.0;
    if (!(d >= 0 && d == std::floor(d) && d < 9.0e15)) {
      fail(what, ": shape[", i, "] must be a non-negative integer; got ", item.ToString().Utf8Value());
    }
    shape.push_back(static_cast<int64_t>(d));
  }
  // The element count must not wrap: [2^31, 4, 2^31] would multiply to 0 in
  // 64 bits and pass for an empty tensor. A zero dimension makes any shape empty.
  bool empty = false;
  for (int64_t d : shape) empty = empty || d == 0;
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (empty) break;
    if (__builtin_mul_overflow(numel, d, &numel) || numel > (int64_t{1} << 53)) {
      fail(what, ": shape ", shape_str(shape), " has more elements than a tensor can hold (over 2^53)");
    }
  }
  return shape;
}

std::string string_arg(const Napi::Value& value, const char* what) {
  if (!value.IsString()) fail(what, " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

double number_arg(const Napi::Value& value, const char* what) {
  if (!value.IsNumber()) fail(what, " must be a number; got ", value.ToString().Utf8Value());
  return value.As<Napi::Number>().DoubleValue();
}

bool bool_arg(const Napi::Value& value, const char* what) {
  if (!value.IsBoolean()) fail(what, " must be true or false");
  return value.As<Napi::Boolean>().Value();
}

Napi::Function NativeTensor::Define(Napi::Env env) {
  return DefineClass(env, "NativeTensor",
                     {
                         StaticMethod<&CountedFunction<&NativeTensor::FromTypedArray>>("fromTypedArray"),
                         StaticMethod<&CountedFunction<&NativeTensor::Empty>>("empty"),
                         StaticMethod<&CountedFunction<&NativeTensor::Zeros>>("zeros"),
                         InstanceAccessor<&NativeTensor::CountedMethod<&NativeTensor::GetShape>>("shape"),
                         InstanceAccessor<&NativeTensor::CountedMethod<&NativeTensor::GetDType>>("dtype"),
                         InstanceAccessor<&NativeTensor::CountedMethod<&NativeTensor::GetDevice>>("device"),
                         InstanceAccessor<&NativeTensor::CountedMethod<&NativeTensor::GetByteOffset>>("byteOffset"),
                         InstanceMethod<&NativeTensor::CountedMethod<&NativeTensor::StorageView>>("storageView"),
                         InstanceMethod<&NativeTensor::CountedMethod<&NativeTensor::To>>("to"),
                         InstanceMethod<&NativeTensor::CountedMethod<&NativeTensor::Clone>>("clone"),
                         InstanceMethod<&NativeTensor::CountedMethod<&NativeTensor::Reshape>>("reshape"),
                         InstanceMethod<&NativeTensor::CountedMethod<&NativeTensor::Rows>>("rows"),
                         InstanceMethod<&NativeTensor::CountedMethod<&NativeTensor::Cast>>("cast"),
                         InstanceMethod<&NativeTensor::CountedMethod<&NativeTensor::SharesStorage>>("sharesStorage"),
                         InstanceMethod<&NativeTensor::CountedMethod<&NativeTensor::Dispose>>("dispose"),
                         InstanceAccessor<&NativeTensor::CountedMethod<&NativeTensor::GetDisposed>>("disposed"),
                     });
}

NativeTensor::NativeTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTensor>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(info.Env(), "NativeTensor is made by Tensor.from, Tensor.zeros or an op");
  }
  tensor = *info[0].As<Napi::External<Tensor>>().Data();
  // What the handle is, as plain properties of `meta` (shape, dtype and device
  // never change for a handle): JavaScript reads them without a call into the
  // addon. Dispose sets meta.disposed.
  Napi::Env env = info.Env();
  Napi::Array shape = Napi::Array::New(env, tensor.shape.size());
  for (size_t i = 0; i < tensor.shape.size(); ++i) shape.Set(static_cast<uint32_t>(i), static_cast<double>(tensor.shape[i]));
  shape.Freeze();
  Napi::Object meta = Napi::Object::New(env);
  meta.DefineProperties({
      Napi::PropertyDescriptor::Value("shape", shape, napi_enumerable),
      Napi::PropertyDescriptor::Value("dtype", Napi::String::New(env, dtype_name(tensor.dtype)), napi_enumerable),
      Napi::PropertyDescriptor::Value("device", Napi::String::New(env, tensor.device().name()), napi_enumerable),
      Napi::PropertyDescriptor::Value("byteOffset", Napi::Number::New(env, static_cast<double>(tensor.offset)),
                                      napi_enumerable),
      Napi::PropertyDescriptor::Value("disposed", Napi::Boolean::New(env, false),
                                      static_cast<napi_property_attributes>(napi_enumerable | napi_writable)),
  });
  info.This().As<Napi::Object>().DefineProperty(Napi::PropertyDescriptor::Value("meta", meta, napi_enumerable));
  // Tell V8 about memory it cannot see, so that it collects dropped tensors
  // in time (memory borrowed from JavaScript is already counted by V8).
  if (!dynamic_cast<JsMemoryOwner*>(tensor.storage->owner.get())) {
    accounted_bytes_ = static_cast<int64_t>(tensor.storage->bytes);
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), accounted_bytes_);
  }
}

NativeTensor::~NativeTensor() { ReleaseStorage(Env()); }

void NativeTensor::ReleaseStorage(Napi::Env env) {
  if (accounted_bytes_ != 0) {
    Napi::MemoryManagement::AdjustExternalMemory(env, -accounted_bytes_);
    accounted_bytes_ = 0;
  }
  tensor = Tensor{};
}

const Tensor& NativeTensor::Get() const {
  if (!tensor.defined()) fail("this tensor was disposed");
  return tensor;
}

Napi::Value NativeTensor::Dispose(const Napi::CallbackInfo& info) {
  ReleaseStorage(info.Env());
  info.This().As<Napi::Object>().Get("meta").As<Napi::Object>().Set("disposed", true);
  return info.Env().Undefined();
}

Napi::Value NativeTensor::GetDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !tensor.defined());
}

Napi::Object NativeTensor::Wrap(Napi::Env env, Tensor tensor) {
  AddonData& data = addon_data(env);
  return data.tensor_constructor.New({Napi::External<Tensor>::New(env, &tensor)});
}

const Tensor& NativeTensor::FromValue(const Napi::Value& value, const char* what) {
  if (value.IsObject()) {
    Napi::Object object = value.As<Napi::Object>();
    AddonData& data = addon_data(value.Env());
    if (object.InstanceOf(data.tensor_constructor.Value())) {
      const Tensor& t = NativeTensor::Unwrap(object)->tensor;
      if (!t.defined()) fail(what, " was disposed");
      return t;
    }
  }
  throw Napi::TypeError::New(value.Env(), std::string(what) + " must be a Tensor");
}

Tensor NativeTensor::FromOptional(const Napi::Value& value, const char* what) {
  if (value.IsUndefined() || value.IsNull()) return Tensor{};
  return FromValue(value, what);
}

Napi::Value NativeTensor::FromTypedArray(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* what = "Tensor.from";
  if (!info[0].IsTypedArray()) throw Napi::TypeError::New(env, "Tensor.from: data must be a Float32Array, Int32Array, Uint8Array or Uint16Array (bf16)");
  napi_typedarray_type type;
  size_t length;
  void* data = nullptr;
  napi_value buffer;
  size_t byte_offset;
  if (napi_get_typedarray_info(env, info[0], &type, &length, &data, &buffer, &byte_offset) != napi_ok) {
    throw Napi::TypeError::New(env, "Tensor.from: could not read the typed array");
  }
  DType dtype;
  switch (type) {
    case napi_float32_array: dtype = DType::f32; break;
    case napi_int32_array: dtype = DType::i32; break;
    case napi_uint8_array: dtype = DType::u8; break;
    case napi_uint16_array: dtype = DType::bf16; break;
    default:
      fail(what, ": data is a ", typed_array_name(type),
           "; expected Float32Array (f32), Int32Array (i32), Uint8Array (u8) or Uint16Array (bf16 bits)");
  }
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    const DType asked = parse_dtype(string_arg(info[2], "Tensor.from: dtype"), what);
    if (asked != dtype) {
      fail(what, ": dtype '", dtype_name(asked), "' does not match the ", typed_array_name(type), " (which holds ",
           dtype_name(dtype), ")");
    }
  }
  const Shape shape = shape_from_js(info[1], what);
  if (shape_numel(shape) != static_cast<int64_t>(length)) {
    fail(what, ": shape ", shape_str(shape), " holds ", shape_numel(shape), " elements but the ",
         typed_array_name(type), " has ", length);
  }
  if (data == nullptr && length > 0) fail(what, ": the typed array's buffer is detached");
  napi_ref ref;
  if (napi_create_reference(env, info[0], 1, &ref) != napi_ok) fail(what, ": could not reference the typed array");
  AddonData& addon = addon_data(env);
  auto owner = std::make_shared<JsMemoryOwner>(addon.state, ref, data, length * dtype_size(dtype));
  Tensor t;
  t.dtype = dtype;
  t.shape = shape;
  t.storage = wrap_host(data, length * dtype_size(dtype), std::move(owner));
  return Wrap(env, std::move(t));
}

Napi::Value NativeTensor::Empty(const Napi::CallbackInfo& info) {
  const Shape shape = shape_from_js(info[0], "Tensor.empty");
  const DType dtype = parse_dtype(string_arg(info[1], "Tensor.empty: dtype"), "Tensor.empty");
  return Wrap(info.Env(), empty(shape, dtype, device_arg(info[2], "Tensor.empty: device")));
}

Napi::Value NativeTensor::Zeros(const Napi::CallbackInfo& info) {
  const Shape shape = shape_from_js(info[0], "Tensor.zeros");
  const DType dtype = parse_dtype(string_arg(info[1], "Tensor.zeros: dtype"), "Tensor.zeros");
  return Wrap(info.Env(), zeros(shape, dtype, device_arg(info[2], "Tensor.zeros: device")));
}

Napi::Value NativeTensor::GetShape(const Napi::CallbackInfo& info) {
  const Tensor& t = Get();
  Napi::Array out = Napi::Array::New(info.Env(), t.shape.size());
  for (size_t i = 0; i < t.shape.size(); ++i) out.Set(static_cast<uint32_t>(i), static_cast<double>(t.shape[i]));
  return out;
}

Napi::Value NativeTensor::GetDType(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dtype_name(Get().dtype));
}

Napi::Value NativeTensor::GetDevice(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), Get().device().name());
}

Napi::Value NativeTensor::GetByteOffset(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Get().offset));
}

// A typed array over the whole host storage; JavaScript takes the tensor's
// part with subarray(). Memory the addon allocated is shown through an external
// ArrayBuffer that holds a reference to the storage, so the view keeps it alive.
Napi::Value NativeTensor::StorageView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Tensor& tensor = Get();
  check_usable(tensor, "Tensor.data");
  if (!tensor.device().is_cpu()) {
    fail("Tensor.data: the tensor is on ", tensor.device().name(), "; copy it to the host first with .to('cpu')");
  }
  count_host_read(tensor.nbytes());
  const StoragePtr& storage = tensor.storage;
  if (auto* js = dynamic_cast<JsMemoryOwner*>(storage->owner.get())) {
    napi_value array = js->value(env);
    if (array == nullptr) fail("Tensor.data: this tensor's memory belongs to another thread");
    return Napi::Value(env, array);
  }
  auto* keep = new StoragePtr(storage);
  napi_value buffer;
  const napi_status status = napi_create_external_arraybuffer(
      env, storage->data, storage->bytes,
      [](napi_env, void*, void* hint) { delete static_cast<StoragePtr*>(hint); }, keep, &buffer);
  if (status != napi_ok) {
    delete keep;
    fail("Tensor.data: this JavaScript runtime does not allow external ArrayBuffers");
  }
  napi_value array;
  const size_t length = storage->bytes / dtype_size(tensor.dtype);
  if (napi_create_typedarray(env, typed_array_type(tensor.dtype), length, buffer, 0, &array) != napi_ok) {
    fail("Tensor.data: could not create a typed array view");
  }
  return Napi::Value(env, array);
}

Napi::Value NativeTensor::To(const Napi::CallbackInfo& info) {
  const Device device = parse_device(string_arg(info[0], "Tensor.to: device"), "Tensor.to");
  return Wrap(info.Env(), to_device(Get(), device));
}

Napi::Value NativeTensor::Clone(const Napi::CallbackInfo& info) { return Wrap(info.Env(), clone(Get())); }

Napi::Value NativeTensor::Reshape(const Napi::CallbackInfo& info) {
  // -1 (infer) is allowed here, so read the numbers directly.
  if (!info[0].IsArray()) fail("Tensor.reshape: shape must be an array of integers");
  const Napi::Array array = info[0].As<Napi::Array>();
  Shape shape;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const Napi::Value item = array.Get(i);
    const double d = item.IsNumber() ? item.As<Napi::Number>().DoubleValue() : -2.0;
    if (!(d >= -1 && d == std::floor(d) && d < 9.0e15)) {
      fail("Tensor.reshape: shape[", i, "] must be an integer >= -1; got ", item.ToString().Utf8Value());
    }
    shape.push_back(static_cast<int64_t>(d));
  }
  return Wrap(info.Env(), reshape(Get(), shape));
}

// rows(start, end): a view of rows [start, end).
Napi::Value NativeTensor::Rows(const Napi::CallbackInfo& info) {
  const Tensor& t = Get();
  if (t.ndim() < 1) fail("Tensor.rows: the tensor (", t.describe(), ") has no row dimension");
  const int64_t count = t.shape[0];
  const auto bound = [&](const Napi::Value& v, const char* name) {
    const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1.0;
    if (!(d >= 0 && d <= static_cast<double>(count) && d == std::floor(d))) {
      fail("Tensor.rows: ", name, " must be an integer from 0 to ", count, " (the tensor's rows); got ", v.ToString().Utf8Value());
    }
    return static_cast<int64_t>(d);
  };
  const int64_t start = bound(info[0], "start");
  const int64_t end = bound(info[1], "end");
  if (end < start) fail("Tensor.rows: end (", end, ") is before start (", start, ")");
  return Wrap(info.Env(), row_view(t, start, end));
}

Napi::Value NativeTensor::Cast(const Napi::CallbackInfo& info) {
  const DType dtype = parse_dtype(string_arg(info[0], "Tensor.cast: dtype"), "Tensor.cast");
  return Wrap(info.Env(), cast(Get(), dtype));
}

Napi::Value NativeTensor::SharesStorage(const Napi::CallbackInfo& info) {
  const Tensor& other = FromValue(info[0], "Tensor.sharesStorage: other");
  return Napi::Boolean::New(info.Env(), other.storage == Get().storage);
}

Napi::Object tensors_object(Napi::Env env, std::initializer_list<std::pair<const char*, Tensor>> fields) {
  Napi::Object out = Napi::Object::New(env);
  for (const auto& [name, t] : fields) {
    if (t.defined()) out.Set(name, NativeTensor::Wrap(env, t));
  }
  return out;
}

}  // namespace rlfarm::binding
