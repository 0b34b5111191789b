// Stored responses (responses.h): JSON text in an LRU list; the byte bound counts that text.
#include "server/responses.h"

namespace nemotron::server {
namespace {

std::string text(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace

void ResponseStore::configure(std::size_t max_count, std::size_t max_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  max_count_ = max_count;
  max_bytes_ = max_bytes;
  evict();
}

bool ResponseStore::enabled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_count_ > 0 && max_bytes_ > 0;
}

bool ResponseStore::put(const std::string& id, const Json& response, const Json& items) {
  Entry e{id, text(response), text(items)};
  const std::size_t size = e.size();
  std::lock_guard<std::mutex> lock(mu_);
  if (max_count_ == 0 || size > max_bytes_) return false;
  if (auto it = index_.find(id); it != index_.end()) {
    bytes_ -= it->second->size();
    lru_.erase(it->second);
    index_.erase(it);
  }
  lru_.push_front(std::move(e));
  index_[id] = lru_.begin();
  bytes_ += size;
  evict();
  return true;
}

ResponseStore::List::iterator ResponseStore::touch(List::iterator it) {
  lru_.splice(lru_.begin(), lru_, it);
  return lru_.begin();
}

void ResponseStore::evict() {
  while (!lru_.empty() && (lru_.size() > max_count_ || bytes_ > max_bytes_)) {
    const Entry& last = lru_.back();
    bytes_ -= last.size();
    index_.erase(last.id);
    lru_.pop_back();
  }
}

std::optional<Json> ResponseStore::get(const std::string& id) {
  std::string response;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(id);
    if (it == index_.end()) return std::nullopt;
    response = touch(it->second)->response;
  }
  return Json::parse(response);
}

std::optional<Json> ResponseStore::conversation(const std::string& id) {
  std::string response, items;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(id);
    if (it == index_.end()) return std::nullopt;
    const Entry& e = *touch(it->second);
    response = e.response;
    items = e.items;
  }
  Json all = Json::parse(items);
  for (Json& item : normalize_items(Json::parse(response)["output"], "previous_response_id"))
    all.push_back(std::move(item));
  return all;
}

bool ResponseStore::erase(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(id);
  if (it == index_.end()) return false;
  bytes_ -= it->second->size();
  lru_.erase(it->second);
  index_.erase(it);
  return true;
}

std::size_t ResponseStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}

std::size_t ResponseStore::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

}  // namespace nemotron::server
