// PII redaction: what each detector redacts, what ordinary text it must leave alone, overlaps,
// configuration, counts, idempotence and concurrent use of one redactor.
#include <catch2/catch.hpp>

#include <string>
#include <thread>
#include <vector>

#include "llmkit/pii.hpp"

using llmkit::text::PiiConfig;
using llmkit::text::PiiCounts;
using llmkit::text::PiiRedactor;

namespace {

const PiiRedactor& default_redactor() {
  static const PiiRedactor r{PiiConfig{}};
  return r;
}

std::string redacted(std::string s, PiiCounts* counts = nullptr) {
  PiiCounts c;
  default_redactor().redact(s, c);
  if (counts) *counts = c;
  return s;
}

// Text that must come back byte for byte.
void require_untouched(const std::string& s) {
  INFO("input: " << s);
  PiiCounts c;
  std::string t = s;
  CHECK(default_redactor().redact(t, c) == 0);
  CHECK(t == s);
  CHECK(c.total() == 0);
}

}  // namespace

TEST_CASE("pii: e-mail addresses", "[pii]") {
  CHECK(redacted("Contact john.doe+news@mail.example.co.uk today.") == "Contact <EMAIL> today.");
  CHECK(redacted("mailto:a_b-c@x-y.org") == "mailto:<EMAIL>");
  CHECK(redacted("(jane@example.com)") == "(<EMAIL>)");
  CHECK(redacted("see x.com/p=abc@def.org now") == "see x.com/p=<EMAIL> now");
  require_untouched("follow @username on twitter");
  require_untouched("user@localhost and a@b.c and foo@ bar.com");
  require_untouched("price: 3 @ $5.00");
}

TEST_CASE("pii: IPv4 addresses", "[pii]") {
  CHECK(redacted("Server at 93.184.216.34.") == "Server at <IP_ADDRESS>.");
  CHECK(redacted("connect to 192.168.1.1:8080 now") == "connect to <IP_ADDRESS>:8080 now");
  CHECK(redacted("255.255.255.0,10.0.0.1") == "<IP_ADDRESS>,<IP_ADDRESS>");
  CHECK(redacted("服务器地址是114.35.103.54，端口80") == "服务器地址是<IP_ADDRESS>，端口80");
  require_untouched("999.999.999.999 and 1.2.3.256 and 01.2.3.4");
  require_untouched("tested on 1.2.3.4.5 and 10.0.0.1.2");
  require_untouched("release version 1.2.3.4, ver. 4.3.2.1, v1.2.3.4 and 版本 2.0.0.1");
  require_untouched("Python 3.11.2 on 2024.05.01");
  // Version-shaped: first octet 0, or below 10 with the rest below 32.
  require_untouched("Standards-Version: 4.5.1.0, dash 0.5.5.1, (>= 2.0.3.4), 0.93.42.3");
  CHECK(redacted("9.32.0.1 and 9.9.9.32") == "<IP_ADDRESS> and <IP_ADDRESS>");
}

TEST_CASE("pii: IPv6 addresses", "[pii]") {
  CHECK(redacted("host 2001:0db8:85a3:0000:0000:8a2e:0370:7334 up") == "host <IP_ADDRESS> up");
  CHECK(redacted("ping 2001:db8::1 ok") == "ping <IP_ADDRESS> ok");
  CHECK(redacted("link-local fe80::1ff:fe23:4567:890a.") == "link-local <IP_ADDRESS>.");
  CHECK(redacted("[2001:db8::8a2e:370:7334]:443") == "[<IP_ADDRESS>]:443");
  CHECK(redacted("at 2001:db8::1: done") == "at <IP_ADDRESS>: done");
  // The dotted tail is one address, not an IPv6 plus an IPv4.
  PiiCounts c;
  CHECK(redacted("mapped ::ffff:192.0.2.128 here", &c) == "mapped <IP_ADDRESS> here");
  CHECK(c.ip == 1);
  require_untouched("the meeting is at 12:30:45 or 1:2:3");
  require_untouched("std::vector<int> and a::b and Foo::bar()");
  require_untouched("MAC 00:1a:2b:3c:4d:5e");
  require_untouched("loopback ::1 and ::");
  require_untouched("hex words dead::beef");
}

TEST_CASE("pii: international and North American phone numbers", "[pii]") {
  CHECK(redacted("Call +1 415 555 2671.") == "Call <PHONE>.");
  CHECK(redacted("London +44 20 7946 0958 office") == "London <PHONE> office");
  CHECK(redacted("+44 (0)20 7946 0958") == "<PHONE>");
  CHECK(redacted("Call (415) 555-2671 or 415-555-2671 or 415.555.2671.") ==
        "Call <PHONE> or <PHONE> or <PHONE>.");
  CHECK(redacted("+1 (415) 555-2671") == "<PHONE>");
  CHECK(redacted("tel:+33-1-23-45-67-89;") == "tel:<PHONE>;");
  // Area code and exchange must start 2-9.
  require_untouched("ticket 123-456-7890 and 415-155-2671");
}

TEST_CASE("pii: Chinese phone numbers", "[pii]") {
  PiiCounts c;
  CHECK(redacted("我的手机号是13800138000，邮箱是a@b.com", &c) == "我的手机号是<PHONE>，邮箱是<EMAIL>");
  CHECK(c.phone == 1);
  CHECK(c.email == 1);
  CHECK(redacted("电话：+86 138 0013 8000。") == "电话：<PHONE>。");
  CHECK(redacted("+8613800138000") == "<PHONE>");
  CHECK(redacted("拨打008613800138000") == "拨打<PHONE>");
  CHECK(redacted("138-0013-8000 或 138 0013 8000") == "<PHONE> 或 <PHONE>");
  CHECK(redacted("Tel:15912345678") == "Tel:<PHONE>");
  CHECK(redacted("座机010-62345678转分机") == "座机<PHONE>转分机");
  CHECK(redacted("深圳0755-8888888") == "深圳<PHONE>");
  // Not a mobile: second digit 0-2, too long, too short, inside a longer run, after a letter.
  require_untouched("12000138000 and 11800138000");
  require_untouched("213800138000 and 138001380001 and 1380013800");
  require_untouched("order A13800138000 and 13800138000B");
}

TEST_CASE("pii: ordinary numbers are not phone numbers", "[pii]") {
  require_untouched("In 2024 there were 300 people; 2023 had 12,345.");
  require_untouched("Dates: 2024-05-01, 2024/05/01, 01/05/2024, 2024.05.01 12:30.");
  require_untouched("Python 3.11.2, Linux 6.1.0-13-amd64, node v18.17.1");
  require_untouched("ISBN 978-3-16-148410-0 and ISBN 0-306-40615-2 and 9783161484100");
  require_untouched("ISBN-13: 978-0-306-40615-7, ISBN-10 0306406152");
  require_untouched("listening on :8080 and localhost:3000, port 443");
  require_untouched("It costs $1,299.99 or ¥12800 or €1.380.013,80");
  require_untouched("12345678901234567890123 and 3141592653589793238");
  require_untouched("Population: 1,411,750,000 (2023). Area 9,596,961 km2.");
  require_untouched("+5 points, score +12, UTC+08:00, 3+4=7, C++20");
  require_untouched("llvm (1:14~++20220202101403+91632c8ac97f-1), 5+14155552671, x+8613800138000");
  require_untouched("the 2024-2025 season, pages 120-135, 3-4-2024");
}

TEST_CASE("pii: Chinese resident ID numbers", "[pii]") {
  PiiCounts c;
  CHECK(redacted("身份证号：11010519491231002X。", &c) == "身份证号：<ID_NUMBER>。");
  CHECK(c.cn_id == 1);
  CHECK(c.phone == 0);
  CHECK(redacted("id 11010519491231002x end") == "id <ID_NUMBER> end");
  CHECK(redacted("310101200002290015") == "<ID_NUMBER>");  // 29 Feb of a leap year
  CHECK(redacted("身份证510108198506153219号") == "身份证<ID_NUMBER>号");
  // Wrong check character (one of them is even Luhn-valid, but "11" is no card issuer).
  require_untouched("110105194912310021 and 110105194912310028");
  // Impossible dates: month 13, 29 Feb 1900, year 1800.
  require_untouched("110105194913310021 110101190002290011 110105180012310024");
  // Unknown province code 99, and a valid ID inside a longer run of digits.
  require_untouched("990105194912310025 and 911010519491231002X1");
}

TEST_CASE("pii: payment card numbers", "[pii]") {
  PiiCounts c;
  CHECK(redacted("Visa 4111 1111 1111 1111 exp", &c) == "Visa <CARD_NUMBER> exp");
  CHECK(c.card == 1);
  CHECK(c.phone == 0);
  CHECK(redacted("4111-1111-1111-1111") == "<CARD_NUMBER>");
  CHECK(redacted("卡号4111111111111111，") == "卡号<CARD_NUMBER>，");
  CHECK(redacted("MC 5555555555554444, 2221000000000009") == "MC <CARD_NUMBER>, <CARD_NUMBER>");
  CHECK(redacted("Amex 3782 822463 10005.") == "Amex <CARD_NUMBER>.");
  CHECK(redacted("6011111111111117 3530111333300000 30569309025904") ==
        "<CARD_NUMBER> <CARD_NUMBER> <CARD_NUMBER>");
  CHECK(redacted("银联卡 6217000000000000004") == "银联卡 <CARD_NUMBER>");
  // The grouped pattern runs into the year; the year stays.
  CHECK(redacted("card 4111 1111 1111 1111 2024 issued") == "card <CARD_NUMBER> 2024 issued");
  // Luhn-invalid, unknown issuer (Luhn-valid), wrong length for Amex, mixed separators.
  require_untouched("4111111111111112 and 4111 1111 1111 1112");
  require_untouched("1234567812345670 and 3782822463100050");
  require_untouched("4111 1111-1111 1111");
  require_untouched("41111111111111111111 is too long");
}

TEST_CASE("pii: overlaps go to the more specific type", "[pii]") {
  PiiCounts c;
  // A QQ mail address whose local part is a mobile number is one e-mail.
  CHECK(redacted("13800138000@qq.com", &c) == "<EMAIL>");
  CHECK(c.email == 1);
  CHECK(c.phone == 0);
  // Valid ID number that is also a Luhn-valid 18-digit UnionPay number: the ID wins.
  CHECK(redacted("620102198808081107", &c) == "<ID_NUMBER>");
  CHECK(c.cn_id == 1);
  CHECK(c.card == 0);
  // A Luhn-valid 13-digit Visa after "+1" also reads as a 14-digit phone number: the card,
  // though shorter, takes precedence and the "+1" stays.
  CHECK(redacted("pay +1 4222222222222 now", &c) == "pay +1 <CARD_NUMBER> now");
  CHECK(c.card == 1);
  CHECK(c.phone == 0);
}

TEST_CASE("pii: placeholders are configurable and disabled types stay", "[pii]") {
  PiiConfig cfg;
  cfg.email_placeholder = "[e]";
  cfg.ip_placeholder = "[ip]";
  cfg.phone_placeholder = "";
  cfg.cn_id_placeholder = "[id]";
  cfg.card_placeholder = "[cc]";
  PiiRedactor r(cfg);
  std::string s = "a@b.com 18.8.8.8 +1 415 555 2671 11010519491231002X 4111111111111111";
  PiiCounts c;
  CHECK(r.redact(s, c) == 5);
  CHECK(s == "[e] [ip]  [id] [cc]");

  PiiConfig off;
  off.email = off.card = false;
  PiiRedactor r2(off);
  s = "a@b.com 4111111111111111 13800138000";
  PiiCounts c2;
  CHECK(r2.redact(s, c2) == 1);
  CHECK(s == "a@b.com 4111111111111111 <PHONE>");
  CHECK(c2.email == 0);
  CHECK(c2.card == 0);

  PiiConfig none;
  none.email = none.ip = none.phone = none.cn_id = none.card = false;
  PiiRedactor r3(none);
  s = "a@b.com 8.8.8.8";
  CHECK(r3.redact(s, c2) == 0);
  CHECK(s == "a@b.com 8.8.8.8");
}

TEST_CASE("pii: counts add up across calls", "[pii]") {
  PiiCounts total;
  std::string a = "x@y.com, z@w.org, 203.0.113.7, 13800138000";
  std::string b = "11010519491231002X 4111 1111 1111 1111 2001:db8::2";
  CHECK(default_redactor().redact(a, total) == 4);
  CHECK(default_redactor().redact(b, total) == 3);
  CHECK(total.email == 2);
  CHECK(total.ip == 2);
  CHECK(total.phone == 1);
  CHECK(total.cn_id == 1);
  CHECK(total.card == 1);
  PiiCounts sum;
  sum.add(total);
  sum.add(total);
  CHECK(sum.email == 4);
  CHECK(sum.card == 2);
  CHECK(sum.total() == 14);
}

TEST_CASE("pii: redacting twice changes nothing more", "[pii]") {
  std::string s = "邮箱 a@b.com，手机 13800138000，IP 61.135.169.121，身份证 11010519491231002X，"
                  "card 4111-1111-1111-1111, call (415) 555-2671, 2001:db8::1.";
  PiiCounts c;
  CHECK(default_redactor().redact(s, c) == 7);
  std::string once = s;
  CHECK(default_redactor().redact(s, c) == 0);
  CHECK(s == once);
  CHECK(c.total() == 7);
}

TEST_CASE("pii: empty, PII-free and invalid UTF-8 input", "[pii]") {
  require_untouched("");
  require_untouched("An ordinary sentence about 42 things in 1999.");
  std::string bad = "\xff\xfe a@b.com \xc3";
  CHECK(redacted(bad) == "\xff\xfe <EMAIL> \xc3");
  // A long PII-free document (pathological digits and colons) stays as it was.
  std::string big;
  for (int i = 0; i < 20000; ++i) big += "1:2:3 0.1.2 2024-05-01 x@ ";
  require_untouched(big);
}

TEST_CASE("pii: one redactor shared by many threads", "[pii]") {
  const PiiRedactor& r = default_redactor();
  std::vector<std::string> docs;
  for (int i = 0; i < 64; ++i)
    docs.push_back("doc " + std::to_string(i) + " mail u" + std::to_string(i) +
                   "@example.com phone 13800138000 ip 93.184.216." + std::to_string(i % 256) +
                   " plain text 2024-05-01 v3.11.2");
  std::vector<std::string> expect = docs;
  PiiCounts serial;
  for (auto& d : expect) r.redact(d, serial);

  constexpr int kThreads = 8;
  std::vector<std::vector<std::string>> outs(kThreads, docs);
  std::vector<PiiCounts> counts(kThreads);
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t)
    pool.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<std::string> copy = docs;
        for (auto& d : copy) r.redact(d, counts[t]);
        if (rep == 0) outs[t] = copy;
      }
    });
  for (auto& th : pool) th.join();
  for (int t = 0; t < kThreads; ++t) {
    CHECK(outs[t] == expect);
    CHECK(counts[t].email == 20 * serial.email);
    CHECK(counts[t].phone == 20 * serial.phone);
    CHECK(counts[t].ip == 20 * serial.ip);
  }
  CHECK(serial.email == 64);
  CHECK(serial.phone == 64);
  CHECK(serial.ip == 64);
}
