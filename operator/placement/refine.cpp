#include "operator/placement/refine.h"

#include <algorithm>
#include <cstdio>

namespace moeserve::placement {
namespace {

// The mutable state of one domain during the search. `share[s]` is the load of the
// replica in slot s (its expert's load over its replica count).
class Search {
 public:
  Search(const std::vector<double>& weights, int32_t num_ranks, std::vector<int32_t>* slot_expert)
      : w_(weights),
        ranks_(num_ranks),
        per_rank_(static_cast<int32_t>(slot_expert->size()) / num_ranks),
        slot_(*slot_expert),
        count_(weights.size(), 0),
        slots_of_(weights.size()),
        share_(slot_expert->size(), 0.0),
        load_(num_ranks, 0.0),
        delta_(num_ranks, 0.0),
        marked_(num_ranks, 0),
        on_a_(weights.size(), 0) {
    for (int32_t s = 0; s < static_cast<int32_t>(slot_.size()); ++s) {
      ++count_[slot_[s]];
      slots_of_[slot_[s]].push_back(s);
    }
    for (int32_t s = 0; s < static_cast<int32_t>(slot_.size()); ++s) {
      share_[s] = w_[slot_[s]] / count_[slot_[s]];
      load_[rank_of(s)] += share_[s];
    }
    collect_multi();
  }

  // One improving move from the heaviest rank; false when there is none.
  bool step() {
    int32_t a = 0;
    for (int32_t g = 1; g < ranks_; ++g) {
      if (load_[g] > load_[a]) a = g;
    }
    const double max = load_[a];
    if (max <= 0) return false;
    best_ = Move{};
    best_.value = max - max * 1e-12;
    for (int32_t i = a * per_rank_; i < (a + 1) * per_rank_; ++i) on_a_[slot_[i]] = 1;
    find_swap(a, max);
    find_rereplication(a);
    for (int32_t i = a * per_rank_; i < (a + 1) * per_rank_; ++i) on_a_[slot_[i]] = 0;
    if (best_.kind == Move::kNone) return false;
    if (best_.kind == Move::kSwap) {
      apply_swap(best_.slot_a, best_.slot_b);
    } else {
      apply_rereplication(best_.slot_b, best_.expert);
    }
    return true;
  }

 private:
  struct Move {
    enum Kind { kNone, kSwap, kRereplicate } kind = kNone;
    int32_t slot_a = -1;  // swap: the slot on the heaviest rank
    int32_t slot_b = -1;  // swap: the other slot; re-replicate: the slot that changes expert
    int32_t expert = -1;  // re-replicate: the expert that gets slot_b
    double value = 0;     // the highest new load over the ranks the move changes
  };

  int32_t rank_of(int32_t slot) const { return slot / per_rank_; }
  bool rank_holds(int32_t rank, int32_t expert) const {
    for (int32_t s = rank * per_rank_; s < (rank + 1) * per_rank_; ++s) {
      if (slot_[s] == expert) return true;
    }
    return false;
  }

  void find_swap(int32_t a, double max) {
    for (int32_t i = a * per_rank_; i < (a + 1) * per_rank_; ++i) {
      const int32_t x = slot_[i];
      for (int32_t b = 0; b < ranks_; ++b) {
        if (b == a || load_[b] >= best_.value) continue;
        for (int32_t j = b * per_rank_; j < (b + 1) * per_rank_; ++j) {
          const int32_t y = slot_[j];
          const double d = share_[i] - share_[j];
          if (y == x || d <= 0) continue;
          const double value = std::max(max - d, load_[b] + d);
          if (value < best_.value && !on_a_[y] && !rank_holds(b, x)) {
            best_ = Move{Move::kSwap, i, j, -1, value};
          }
        }
      }
    }
  }

  // Adds `d` to rank g's pending change, remembering which ranks were touched.
  void touch(int32_t g, double d) {
    if (!marked_[g]) {
      marked_[g] = 1;
      touched_.push_back(g);
    }
    delta_[g] += d;
  }
  void clear_touched() {
    for (int32_t g : touched_) {
      delta_[g] = 0;
      marked_[g] = 0;
    }
    touched_.clear();
  }

  // The new loads of the ranks that hold expert e once it loses one replica, as
  // (rank, value) per rank in ascending order, the slot's own share still counted.
  void grow_shares(int32_t e, std::vector<std::pair<int32_t, double>>* out) const {
    out->clear();
    const double increase = w_[e] / (count_[e] - 1) - w_[e] / count_[e];
    for (int32_t s : slots_of_[e]) {
      const int32_t g = rank_of(s);
      if (out->empty() || out->back().first != g) out->push_back({g, load_[g]});
      out->back().second += increase;
    }
  }

  // Re-replication, both ways the heaviest rank `a` can gain from it:
  //   (i)  an expert f on `a` gets one more replica, in a slot s taken from an expert e
  //        with two or more (every replica of f, the one on `a` too, gets lighter);
  //   (ii) a slot s on `a` whose expert e has two or more replicas is given to an expert
  //        f that `a` does not hold: the one with the largest load per replica among
  //        those that fit (EPLB's choice, restricted to moves that lower the max).
  void find_rereplication(int32_t a) {
    std::vector<std::pair<int32_t, double>>& grown = grown_;
    // (i)
    for (int32_t i = a * per_rank_; i < (a + 1) * per_rank_; ++i) {
      const int32_t f = slot_[i];
      if (w_[f] <= 0 || (i > a * per_rank_ && slot_[i - 1] == f)) continue;
      const double f_gain = w_[f] / (count_[f] + 1);  // share of f after one more replica
      for (int32_t e : multi_) {
        if (e == f) continue;
        grow_shares(e, &grown);
        // Ranks of e that would reach the bound even without the slot they give up: two
        // of them rule e out, one fixes which of its slots must go.
        int32_t over = 0, forced = -1;
        for (const auto& [g, v] : grown) {
          if (g != a && v >= best_.value) {
            ++over;
            forced = g;
          }
        }
        if (over >= 2) continue;
        const double e_after = w_[e] / (count_[e] - 1);
        for (const auto& [g, v] : grown) touch(g, v - load_[g]);
        for (int32_t s : slots_of_[f]) touch(rank_of(s), f_gain - share_[s]);
        // The two highest new loads over the touched ranks, to score each choice of slot.
        int32_t top = -1;
        double top_value = -1, second_value = -1;
        for (int32_t g : touched_) {
          const double v = load_[g] + delta_[g];
          if (v > top_value) {
            second_value = top_value;
            top_value = v;
            top = g;
          } else if (v > second_value) {
            second_value = v;
          }
        }
        for (int32_t s : slots_of_[e]) {
          const int32_t b = rank_of(s);
          if (forced >= 0 && b != forced) continue;
          // b trades its grown e replica for f's new one; the other touched ranks keep
          // their value (b may hold further replicas of e, already counted).
          const double b_value = load_[b] + delta_[b] - e_after + f_gain;
          const double others = b == top ? second_value : top_value;
          const double value = std::max(others, b_value);
          if (value < best_.value && !rank_holds(b, f)) {
            best_ = Move{Move::kRereplicate, -1, s, f, value};
          }
        }
        clear_touched();
      }
    }
    // (ii)
    for (int32_t s = a * per_rank_; s < (a + 1) * per_rank_; ++s) {
      const int32_t e = slot_[s];
      if (count_[e] < 2) continue;
      grow_shares(e, &grown);
      double others = -1, a_value = load_[a] - share_[s];
      for (const auto& [g, v] : grown) {
        if (g == a) {
          a_value = v - w_[e] / (count_[e] - 1);
        } else {
          others = std::max(others, v);
        }
      }
      if (others >= best_.value) continue;
      int32_t best_f = -1;
      for (int32_t f = 0; f < static_cast<int32_t>(w_.size()); ++f) {
        if (on_a_[f] || w_[f] <= 0) continue;
        if (a_value + w_[f] / (count_[f] + 1) >= best_.value) continue;
        // f's own ranks only get lighter, so `others` and a's value bound the move.
        if (best_f < 0 || w_[f] / count_[f] > w_[best_f] / count_[best_f]) best_f = f;
      }
      if (best_f < 0) continue;
      const double value = std::max(others, a_value + w_[best_f] / (count_[best_f] + 1));
      if (value < best_.value) best_ = Move{Move::kRereplicate, -1, s, best_f, value};
    }
  }

  void replace(std::vector<int32_t>* slots, int32_t from, int32_t to) {
    *std::find(slots->begin(), slots->end(), from) = to;
  }

  void apply_swap(int32_t i, int32_t j) {
    const int32_t x = slot_[i], y = slot_[j];
    const double d = share_[i] - share_[j];
    load_[rank_of(i)] -= d;
    load_[rank_of(j)] += d;
    std::swap(slot_[i], slot_[j]);
    std::swap(share_[i], share_[j]);
    replace(&slots_of_[x], i, j);
    replace(&slots_of_[y], j, i);
    std::sort(slots_of_[x].begin(), slots_of_[x].end());
    std::sort(slots_of_[y].begin(), slots_of_[y].end());
  }

  // Slot s passes from its expert (which keeps at least one replica) to expert f.
  void apply_rereplication(int32_t s, int32_t f) {
    const int32_t e = slot_[s];
    std::vector<int32_t>& e_slots = slots_of_[e];
    e_slots.erase(std::find(e_slots.begin(), e_slots.end(), s));
    load_[rank_of(s)] -= share_[s];
    slot_[s] = f;
    --count_[e];
    ++count_[f];
    std::vector<int32_t>& f_slots = slots_of_[f];
    f_slots.insert(std::upper_bound(f_slots.begin(), f_slots.end(), s), s);
    share_[s] = 0;
    for (int32_t expert : {e, f}) {
      const double share = w_[expert] / count_[expert];
      for (int32_t t : slots_of_[expert]) {
        load_[rank_of(t)] += share - share_[t];
        share_[t] = share;
      }
    }
    collect_multi();
  }

  void collect_multi() {
    multi_.clear();
    for (int32_t e = 0; e < static_cast<int32_t>(w_.size()); ++e) {
      if (count_[e] >= 2) multi_.push_back(e);
    }
  }

  const std::vector<double>& w_;
  const int32_t ranks_;
  const int32_t per_rank_;
  std::vector<int32_t>& slot_;
  std::vector<int32_t> count_;
  std::vector<std::vector<int32_t>> slots_of_;
  std::vector<double> share_;
  std::vector<double> load_;
  std::vector<double> delta_;
  std::vector<char> marked_;
  std::vector<char> on_a_;                         // experts on the heaviest rank
  std::vector<int32_t> multi_;                     // experts with >= 2 replicas
  std::vector<std::pair<int32_t, double>> grown_;  // scratch of grow_shares
  std::vector<int32_t> touched_;
  Move best_;
};

}  // namespace

double max_rank_load(const std::vector<double>& weights, const std::vector<int32_t>& slot_expert,
                     int32_t num_ranks) {
  std::vector<int32_t> replicas(weights.size(), 0);
  for (int32_t e : slot_expert) ++replicas[e];
  const size_t per_rank = slot_expert.size() / num_ranks;
  std::vector<double> load(num_ranks, 0.0);
  for (size_t s = 0; s < slot_expert.size(); ++s) {
    load[s / per_rank] += weights[slot_expert[s]] / replicas[slot_expert[s]];
  }
  return *std::max_element(load.begin(), load.end());
}

double refine_domain(const std::vector<double>& weights, int32_t num_ranks,
                     std::vector<int32_t>* slot_expert, int32_t max_moves) {
  const double before = max_rank_load(weights, *slot_expert, num_ranks);
  const std::vector<int32_t> start = *slot_expert;
  Search search(weights, num_ranks, slot_expert);
  int32_t move = 0;
  for (; move < max_moves && search.step(); ++move) {
  }
  const double after = max_rank_load(weights, *slot_expert, num_ranks);
  if (after < before) return after;
  *slot_expert = start;
  return before;
}

void refine_layer(const std::vector<double>& weights, int32_t num_ranks, int32_t num_domains,
                  std::vector<int32_t>* phy2log) {
  const int32_t slots = static_cast<int32_t>(phy2log->size()) / num_domains;
  const int32_t ranks = num_ranks / num_domains;
  std::vector<int32_t> local_of(weights.size(), -1);
  for (int32_t d = 0; d < num_domains; ++d) {
    std::vector<int32_t> experts;  // local id -> expert, ascending
    for (int32_t s = d * slots; s < (d + 1) * slots; ++s) experts.push_back((*phy2log)[s]);
    std::sort(experts.begin(), experts.end());
    experts.erase(std::unique(experts.begin(), experts.end()), experts.end());
    std::vector<double> local_weights;
    for (size_t j = 0; j < experts.size(); ++j) {
      local_of[experts[j]] = static_cast<int32_t>(j);
      local_weights.push_back(weights[experts[j]]);
    }
    std::vector<int32_t> local(slots);
    for (int32_t s = 0; s < slots; ++s) local[s] = local_of[(*phy2log)[d * slots + s]];
    refine_domain(local_weights, ranks, &local, 8 * slots + 64);
    for (int32_t s = 0; s < slots; ++s) (*phy2log)[d * slots + s] = experts[local[s]];
  }
}

}  // namespace moeserve::placement
