// The one place Boost.Asio/Beast headers are included from (private to common/*.cpp).
// With GCC 12 and C++20, Boost 1.74's Asio needs <utility> before its own headers.
#pragma once

#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace moeserve::net_ns {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;
}  // namespace moeserve::net_ns
