#include "proxy/runtime_state.h"

#include <doctest/doctest.h>

namespace weir::proxy {
namespace {

config::Config shop(std::vector<std::pair<std::string, uint32_t>> versions,
                    std::string stable = "blue") {
  config::Config c;
  config::Service s;
  s.name = "shop";
  s.stable = std::move(stable);
  for (auto& [name, w] : versions) {
    config::Version v;
    v.name = name;
    v.weight = w;
    v.endpoints.push_back({"127.0.0.1", 9000});
    s.versions.push_back(v);
  }
  c.services.push_back(s);
  return c;
}

TEST_CASE("runtime_state: no overrides leave the configuration as it is") {
  config::Config c = shop({{"blue", 90}, {"green", 10}});
  RuntimeState rt;
  CHECK(rt.reconcile(c).empty());
  config::Config eff = rt.apply(c);
  CHECK(eff.services[0].versions[0].weight == 90);
  CHECK(eff.services[0].stable == "blue");
  CHECK(rt.find("shop")->state_version == 1);
}

TEST_CASE("runtime_state: overrides apply and survive JSON") {
  config::Config c = shop({{"blue", 90}, {"green", 10}});
  RuntimeState rt;
  rt.reconcile(c);
  rt.find("shop")->weights = {{"blue", 0}, {"green", 100}};
  rt.find("shop")->stable = "green";
  std::string error;
  auto back = RuntimeState::from_json(nlohmann::json::parse(rt.to_json().dump()), &error);
  REQUIRE(back);
  config::Config eff = back->apply(c);
  CHECK(eff.services[0].versions[0].weight == 0);
  CHECK(eff.services[0].versions[1].weight == 100);
  CHECK(eff.services[0].stable == "green");
  CHECK(back->weights(c.services[0]) == std::map<std::string, uint32_t>{{"blue", 0}, {"green", 100}});

  CHECK_FALSE(RuntimeState::from_json(nlohmann::json{{"format", 9}}, &error));
  CHECK(error.find("format") != std::string::npos);
  CHECK_FALSE(RuntimeState::from_json(nlohmann::json::array(), &error));
}

TEST_CASE("runtime_state: reconcile keeps overrides for the same versions, drops them otherwise") {
  config::Config c = shop({{"blue", 90}, {"green", 10}});
  RuntimeState rt;
  rt.reconcile(c);
  rt.find("shop")->weights = {{"blue", 0}, {"green", 100}};
  // New configured weights: overrides stay, the state version moves (old ETags stop matching).
  CHECK(rt.reconcile(shop({{"blue", 80}, {"green", 20}})).empty());
  CHECK(rt.find("shop")->weights.size() == 2);
  CHECK(rt.find("shop")->state_version == 2);
  // The same definition again changes nothing.
  rt.reconcile(shop({{"blue", 80}, {"green", 20}}));
  CHECK(rt.find("shop")->state_version == 2);
  // A new version set resets.
  CHECK(rt.reconcile(shop({{"blue", 80}, {"canary", 20}})) == std::vector<std::string>{"shop"});
  CHECK_FALSE(rt.find("shop")->overridden());
  CHECK(rt.find("shop")->state_version == 3);
  // A removed service is forgotten.
  rt.reconcile(config::Config{});
  CHECK(rt.find("shop") == nullptr);
}

TEST_CASE("runtime_state: merge_weights validates and keeps unnamed versions") {
  config::Config c = shop({{"blue", 90}, {"green", 10}});
  std::map<std::string, uint32_t> w = {{"blue", 90}, {"green", 10}};
  CHECK(merge_weights(c.services[0], {{"green", 50}}, w) == "");
  CHECK(w == std::map<std::string, uint32_t>{{"blue", 90}, {"green", 50}});
  CHECK(merge_weights(c.services[0], {{"purple", 5}}, w).find("no version \"purple\"") !=
        std::string::npos);
  CHECK(merge_weights(c.services[0], {{"blue", -1}}, w).find("between 0 and 10000") !=
        std::string::npos);
  CHECK(merge_weights(c.services[0], {{"blue", 10001}}, w) != "");
  CHECK(merge_weights(c.services[0], {{"blue", 0}, {"green", 0}}, w).find("all weights") !=
        std::string::npos);
  CHECK(merge_weights(c.services[0], {}, w) != "");
  CHECK(w == std::map<std::string, uint32_t>{{"blue", 90}, {"green", 50}});  // untouched
}

TEST_CASE("runtime_state: a disabled guard survives JSON and a changed version set") {
  config::Config c = shop({{"blue", 90}, {"green", 10}});
  RuntimeState rt;
  rt.reconcile(c);
  CHECK_FALSE(rt.find("shop")->guard_disabled);
  rt.find("shop")->guard_disabled = true;
  rt.find("shop")->guard_reason = "noisy backend";
  std::string error;
  auto back = RuntimeState::from_json(nlohmann::json::parse(rt.to_json().dump()), &error);
  REQUIRE(back);
  CHECK(back->find("shop")->guard_disabled);
  CHECK(back->find("shop")->guard_reason == "noisy backend");
  // Weights go when the versions change; the operator's guard switch stays.
  back->reconcile(shop({{"blue", 90}, {"canary", 10}}));
  CHECK(back->find("shop")->guard_disabled);

  // A state file from before the switch existed loads with the guard on.
  nlohmann::json old = rt.to_json();
  old["services"]["shop"].erase("guard_disabled");
  old["services"]["shop"].erase("guard_reason");
  auto loaded = RuntimeState::from_json(old, &error);
  REQUIRE(loaded);
  CHECK_FALSE(loaded->find("shop")->guard_disabled);
  old["services"]["shop"]["guard_disabled"] = "yes";
  CHECK_FALSE(RuntimeState::from_json(old, &error));
}


}  // namespace
}  // namespace weir::proxy
