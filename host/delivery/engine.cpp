#include "delivery/engine.hpp"

#include "core/ids.hpp"
#include "core/thread_name.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <future>

namespace samband::delivery {

namespace asio = boost::asio;
using store::delivery_state;

std::int64_t backoff_ms(const policy& p, int attempt, std::mt19937_64& rng) {
    std::int64_t d = p.backoff_base_ms;
    for (int i = 1; i < attempt && d < p.backoff_max_ms; ++i) d *= 2;
    d = std::min(d, p.backoff_max_ms);
    std::int64_t half = d / 2;
    std::uniform_int_distribution<std::int64_t> dist(0, std::max<std::int64_t>(half, 0));
    return (d - half) + dist(rng);
}

std::uint64_t attachment_handles::add(std::string sha256) {
    std::lock_guard lock(mu_);
    std::uint64_t h = next_++;
    map_.emplace(h, std::move(sha256));
    return h;
}
void attachment_handles::remove(std::uint64_t handle) {
    std::lock_guard lock(mu_);
    map_.erase(handle);
}
std::optional<std::string> attachment_handles::find(std::uint64_t handle) const {
    std::lock_guard lock(mu_);
    auto it = map_.find(handle);
    if (it == map_.end()) return std::nullopt;
    return it->second;
}

engine::engine(store::store& st, core::logger& log, attachment_handles& handles,
               attachment_opener open_attachment)
    : store_(st),
      log_(log),
      handles_(handles),
      open_attachment_(std::move(open_attachment)),
      tick_(io_),
      rng_(std::random_device{}()) {
    work_ = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
        io_.get_executor());
}

engine::~engine() {
    shutdown();
}

engine::workers::workers(const std::string& destination, int threads)
    : size(static_cast<std::size_t>(std::clamp(threads, 1, 4))),
      pool(size),
      calls(pool.get_executor()) {
    // The pool's threads named after the destination, best effort: one naming task per thread,
    // posted while they are all idle (none waits for the others, so a pool stopped before they
    // ran still joins).
    for (std::size_t i = 0; i < size; ++i)
        asio::post(pool, [name = "dst:" + destination] { core::name_this_thread(name); });
}

void engine::set_destination(const std::string& name, plugin::instance* sink, policy p) {
    auto& d = dests_[name];
    d.name = name;
    d.sink = sink;
    d.pol = p;
    if (!d.worker) d.worker = std::make_unique<workers>(name, p.concurrency);
    {
        std::lock_guard lock(rooms_mu_);
        rooms_[name] = d.room;
    }
    publish(d);
}

void engine::run_quiet(std::function<void()> fn) {
    holding_.store(true);
    // Work is only ever added on the engine thread, so "none outstanding" checked there holds
    // while `fn` runs.
    for (bool done = false; !done;) {
        {
            std::unique_lock lock(quiet_mu_);
            quiet_cv_.wait(lock, [this] { return worker_jobs_.load() == 0; });
        }
        run_sync([&] {
            if (worker_jobs_.load() != 0) return;
            fn();
            done = true;
        });
    }
    holding_.store(false);
    kick();
}

void engine::remove_destination(const std::string& name) {
    {
        std::lock_guard lock(rooms_mu_);
        rooms_.erase(name);
    }
    dests_.erase(name);
}

std::shared_ptr<engine::accept_room> engine::room_of(const std::string& name) {
    std::lock_guard lock(rooms_mu_);
    auto it = rooms_.find(name);
    return it == rooms_.end() ? nullptr : it->second;
}

// The store's writer takes a slot for a delivery it stores in flight at accept (its chain idle);
// the rows come to on_accepted after their commit. A slot taken counts as a claim out, so
// stop_dispatch waits for it.
store::accept_claims engine::accept_hooks() {
    store::accept_claims c;
    c.take = [this](const std::string& dest) {
        if (!dispatching_.load() || holding_.load()) return false;
        auto room = room_of(dest);
        if (!room) return false;
        std::lock_guard lock(room->mu);
        if (room->taken >= room->limit) return false;
        ++room->taken;
        ++claims_out_;
        return true;
    };
    c.give_back = [this](const std::string& dest) {
        if (auto room = room_of(dest)) {
            std::lock_guard lock(room->mu);
            if (room->taken > 0) --room->taken;
        }
        --claims_out_;
    };
    c.claimed = [this](std::vector<store::delivery_row> rows) {
        asio::post(io_, [this, rows = std::move(rows)]() mutable { on_accepted(std::move(rows)); });
    };
    c.due = [this](const std::string& dest) {
        if (auto room = room_of(dest)) {
            std::lock_guard lock(room->mu);
            room->due = true;
        }
        kick();
    };
    return c;
}

// What accepts may take at `d` now: the free slots, only while no claim is out and the last claim
// came back short (no backlog that a new event would overtake). THREAD: the engine thread.
void engine::publish(destination& d) {
    bool open = accept_at_store_ && dispatching_.load() && !holding_.load() && d.sink &&
                !d.claiming && d.caught_up && d.sink->ready();
    std::lock_guard lock(d.room->mu);
    d.room->limit = open ? std::max(0, d.pol.concurrency - d.in_flight) : 0;
}

store::delivery_update engine::hand_back(const store::delivery_row& r, std::string why) {
    store::delivery_update u;
    u.delivery_id = r.id;
    u.fence = r.fence;
    u.state = delivery_state::pending;
    u.hand_back = true;
    u.reason = std::move(why);
    return u;
}

// Deliveries the store claimed at accept time, after their commit: they start as claimed ones do
// (the same prepare: gate, transforms), or go back to pending when the destination cannot take
// them now.
void engine::on_accepted(std::vector<store::delivery_row> rows) {
    std::map<std::string, std::vector<store::delivery_row>> go;
    std::vector<store::delivery_update> back;
    for (auto& r : rows) {
        --claims_out_;
        auto dit = dests_.find(r.destination);
        if (dit != dests_.end()) {
            // Arrived: counted in in_flight from here on (begin), no longer as taken.
            std::lock_guard lock(dit->second.room->mu);
            if (dit->second.room->taken > 0) --dit->second.room->taken;
            dit->second.room->limit = std::max(0, dit->second.room->limit - 1);
        }
        if (dit == dests_.end() || !dispatching_.load() || holding_.load() || !dit->second.sink ||
            !dit->second.sink->ready()) {
            back.push_back(hand_back(
                r,
                "handed back: claimed at accept while the engine stopped or paused, or the "
                "sink was down"));
            continue;
        }
        go[r.destination].push_back(std::move(r));
    }
    if (!back.empty()) apply(std::move(back));
    for (auto& [name, part] : go) {
        destination& d = dests_.find(name)->second;
        begin(d, std::move(part));
        publish(d);
    }
}

void engine::start() {
    accept_at_store_ = store_.set_accept_claims(accept_hooks());
    store_tells_due_.store(accept_at_store_);
    for (auto& [name, d] : dests_) publish(d);
    thread_ = std::thread([this] {
        core::name_this_thread("engine");
        io_.run();
    });
    asio::post(io_, [this] {
        schedule_tick();
        pump_all();
    });
}

void engine::shutdown() {
    if (!thread_.joinable()) return;
    // No more claims at accept; a job that took its hooks before this has committed (and handed
    // its rows to io_, which drops them) once the flush returns. A store that never claimed at
    // accept (PostgreSQL) is not waited for here.
    if (accept_at_store_) {
        store_.set_accept_claims({});
        store_tells_due_.store(false);
        store_.flush();
    }
    asio::post(io_, [this] { tick_.cancel(); });
    work_.reset();
    io_.stop();
    thread_.join();
    // Workers finish what they run (a lookup or call ends at its own deadline); results posted
    // to the stopped engine are dropped: their deliveries were handed back by stop_dispatch.
    for (auto& [name, d] : dests_) d.worker->pool.join();
}

void engine::run_sync(std::function<void()> fn) {
    std::promise<void> p;
    asio::post(io_, [&] {
        fn();
        p.set_value();
    });
    p.get_future().wait();
}

void engine::schedule_tick() {
    tick_.expires_after(std::chrono::milliseconds(200));
    tick_.async_wait([this](boost::system::error_code ec) {
        if (ec) return;
        pump_all(true);
        schedule_tick();
    });
}

void engine::kick() {
    if (kick_pending_.exchange(true)) return;
    asio::post(io_, [this] {
        kick_pending_.store(false);
        pump_all();
    });
}

void engine::event_stored() {
    if (!store_tells_due_.load(std::memory_order_relaxed)) kick();
}

void engine::pump_all(bool tick) {
    if (!dispatching_.load()) return;
    for (auto& [name, d] : dests_) pump(d, tick);
}

// Claims what the destination has room for. The claim is a store round trip (a commit): it runs
// on the store's thread and its rows come back to the engine thread in on_claimed, so the engine
// thread never waits for the store. One claim per destination at a time.
void engine::pump(destination& d, bool tick) {
    if (!dispatching_.load() || holding_.load() || !d.sink || d.claiming ||
        d.in_flight >= d.pol.concurrency || !d.sink->ready()) {
        // Not while the sink cannot take deliveries (stuck, or an isolated child restarting or
        // quarantined): no attempt is spent then.
        publish(d);
        return;
    }
    int taken = 0;
    bool due = true;
    {
        std::lock_guard lock(d.room->mu);
        taken = d.room->taken;
        due = d.room->due;
    }
    // With claims at accept, a caught-up destination claims only when a delivery may have come
    // due since (the store says so), or at the tick (a retry's time came): not after every
    // completion for nothing.
    if (accept_at_store_ && d.caught_up && !due && !tick) {
        publish(d);
        return;
    }
    int room = d.pol.concurrency - d.in_flight - taken;
    if (room <= 0) {
        publish(d);
        return;
    }
    std::size_t want = std::min<std::size_t>(static_cast<std::size_t>(room), 256);
    // The state changes that freed these slots reach the store before the claim that reuses them.
    apply_now();
    d.claiming = true;
    {
        std::lock_guard lock(d.room->mu);
        d.room->due = false;
        d.room->limit = 0;  // the claim may fill every free slot
    }
    ++claims_out_;
    store_.claim_due_async(d.name, core::now_ms(), want, d.pol.max_attempts,
                           [this, name = d.name, want](boost::system::error_code ec,
                                                       std::vector<store::delivery_row> rows) {
                               asio::post(io_,
                                          [this, name, ec, want, rows = std::move(rows)]() mutable {
                                              on_claimed(name, ec, std::move(rows), want);
                                          });
                           });
}

void engine::on_claimed(const std::string& name, boost::system::error_code ec,
                        std::vector<store::delivery_row> rows, std::size_t asked) {
    --claims_out_;
    auto dit = dests_.find(name);
    if (dit != dests_.end()) {
        dit->second.claiming = false;
        dit->second.caught_up = !ec && rows.size() < asked;
        publish(dit->second);
    }
    if (ec) {
        log_.error("deliver.claim", "store claim failed: " + ec.message(), {{"endpoint", name}});
        return;  // the tick tries again
    }
    if (dit == dests_.end() || !dispatching_.load() || holding_.load() || !dit->second.sink ||
        !dit->second.sink->ready()) {
        // Claimed while the destination went away, its sink went down, or the engine stopped or
        // paused: back to pending, the attempt not counted.
        std::vector<store::delivery_update> ups;
        for (const auto& r : rows) {
            if (r.state == delivery_state::dead) continue;
            ups.push_back(hand_back(
                r,
                "handed back: claimed while the engine stopped or paused, or the sink was down"));
        }
        if (!ups.empty()) apply(std::move(ups));
        return;
    }
    destination& d = dit->second;
    bool any = false;
    std::vector<store::delivery_row> go;
    for (auto& r : rows) {
        if (r.state == delivery_state::dead) {  // its attempts were used up by crashes
            log_.error("deliver.dead", r.reason,
                       {{"delivery", std::to_string(r.id)},
                        {"event", r.event_id},
                        {"endpoint", d.name},
                        {"attempts", std::to_string(r.attempts)}});
            if (obs_.state) obs_.state(d.name, delivery_state::dead);
            continue;
        }
        any = true;
        go.push_back(std::move(r));
    }
    if (!go.empty()) begin(d, std::move(go));
    // More may be due: claim again while there is room (an empty claim ends the round).
    if (!rows.empty() || any) pump(d);
}

// Prepare (event load, gate, GP lookup, transforms) runs on the destination's own workers: a
// lookup or transform that hangs (until its own deadline) delays only this destination. A claimed
// batch is split into one job per worker thread (not one per delivery), and each job's results
// come back to the engine thread together: thread hand-offs per batch, not per delivery.
void engine::begin(destination& d, std::vector<store::delivery_row> rows) {
    std::size_t threads = static_cast<std::size_t>(std::clamp(d.pol.concurrency, 1, 4));
    std::size_t parts = std::min(threads, rows.size());
    std::vector<std::vector<std::pair<std::uint64_t, store::delivery_row>>> split(parts);
    for (std::size_t i = 0; i < rows.size(); ++i) {
        std::uint64_t token = next_token_++;
        ++d.in_flight;
        ++in_flight_total_;
        preparing_.emplace(token, rows[i]);
        split[i % parts].emplace_back(token, std::move(rows[i]));
    }
    for (auto& part : split) {
        ++worker_jobs_;
        asio::post(d.worker->pool, [this, part = std::move(part)]() mutable {
            // The part's events in one read (one read transaction, not one per delivery).
            std::vector<std::string> ids;
            ids.reserve(part.size());
            for (const auto& tr : part) ids.push_back(tr.second.event_id);
            auto evs = store_.get_events(ids);
            std::vector<prepared_one> out;
            out.reserve(part.size());
            for (std::size_t k = 0; k < part.size(); ++k)
                out.push_back(prepare_one(part[k].first, part[k].second, std::move(evs[k])));
            asio::post(io_, [this, out = std::move(out)]() mutable {
                send_list sends;
                for (auto& o : out) on_prepared(o.token, o.received_ms, std::move(o.prep), &sends);
                send(std::move(sends));
            });
            worker_done();
        });
    }
}

// THREAD: a destination worker.
engine::prepared_one engine::prepare_one(
    std::uint64_t token, const store::delivery_row& row,
    boost::system::result<std::optional<store::event_row>> ev) {
    prepared_one o;
    o.token = token;
    if (!ev && ev.error() == store::sealed_record_error()) {
        // Changed bytes or a key the store lacks: no retry opens it, and every retry would log
        // again. Dead at once, saying why; an operator retries once the keys are fixed.
        o.prep.what = prepared::action::dead;
        o.prep.reason = "the stored event " + row.event_id +
                        " did not open: " + ev.error().message() +
                        "; an operator retry delivers it once the keys are fixed";
    } else if (!ev) {
        o.prep.what = prepared::action::retry;
        o.prep.reason = "store read failed: " + ev.error().message();
    } else if (!*ev) {
        o.prep.what = prepared::action::dead;
        o.prep.reason = "event not found in the store";
    } else if ((*ev)->lost_ms != 0) {
        // A crash lost its envelope before its acknowledgement (a replay or an operator retry of
        // its dead delivery brings it here): nothing to send, and no retry changes that.
        o.prep.what = prepared::action::dead;
        o.prep.reason = std::string(store::kLostReason) + " (event " + row.event_id +
                        ", found lost at " + core::iso8601_ms((*ev)->lost_ms) +
                        "); no retry delivers it: the source's resend is a new event";
    } else {
        o.received_ms = (*ev)->received_ms;
        if (prepare_) {
            o.prep = prepare_(row, **ev);
        } else {
            o.prep.event.envelope_json = std::move((*ev)->envelope_json);
            for (const auto& a : (*ev)->attachments) {
                o.prep.event.attachments.push_back(
                    {a.id, a.filename, a.media_type, a.sha256, {}, a.size, 0});
            }
        }
    }
    // The files plugins read the attachments from, here on the worker (a decrypted copy of a large
    // attachment takes a while). One that cannot be had (a sealed blob failing authentication, a
    // full copy folder) fails the attempt with its reason before any sink sees a byte.
    if (o.prep.what == prepared::action::send && open_attachment_) {
        for (auto& att : o.prep.event.attachments) {
            if (!att.path.empty()) continue;
            auto f = open_attachment_(att.sha256_hex);
            if (!f && f.error().auth) {
                // As a stored event that does not open: no retry opens it; dead at once, saying
                // why, and never a byte of it to a plugin.
                o.prep.what = prepared::action::dead;
                o.prep.reason =
                    f.error().why +
                    "; an operator retry delivers it once the blob or the keys are fixed";
                o.prep.holds.clear();
                break;
            }
            if (!f) {
                o.prep.what = prepared::action::retry;
                o.prep.reason = f.error().why;
                o.prep.holds.clear();
                break;
            }
            att.path = std::move(f->path);
            if (f->hold) o.prep.holds.push_back(std::move(f->hold));
        }
    }
    return o;
}

// deliver() is called on the destination's strand: one call at a time per instance, never on the
// engine thread (a sink that blocks there stalls only itself; the attempt's timer still fires).
// The deliveries prepared together are handed over in one strand job, in order, and to the
// instance in one call (one hop to its call thread for the list, not one per delivery).
void engine::send(send_list sends) {
    if (sends.empty()) return;
    auto dit = dests_.find(sends.front().second->destination);
    if (dit == dests_.end()) return;  // not reached: on_prepared checked it this turn
    ++worker_jobs_;
    asio::post(dit->second.worker->calls, [this, sends = std::move(sends)] {
        for (std::size_t i = 0; i < sends.size();) {
            plugin::instance* sink = sends[i].first;
            std::vector<std::shared_ptr<const plugin::delivery_ref>> refs;
            for (; i < sends.size() && sends[i].first == sink; ++i) refs.push_back(sends[i].second);
            auto results = sink->deliver(refs);
            for (std::size_t k = 0; k < refs.size(); ++k) {
                if (results[k].ok()) continue;
                asio::post(io_, [this, token = refs[k]->token, r = std::move(results[k])] {
                    finish(token, {r.status, {}, r.message});
                });
            }
        }
        worker_done();
    });
}

void engine::worker_done() {
    std::lock_guard lock(quiet_mu_);
    --worker_jobs_;
    quiet_cv_.notify_all();
}

void engine::on_prepared(std::uint64_t token, std::int64_t received_ms, prepared prep,
                         send_list* sends) {
    auto pit = preparing_.find(token);
    if (pit == preparing_.end()) return;  // handed back at shutdown meanwhile
    store::delivery_row row = std::move(pit->second);
    preparing_.erase(pit);
    auto dit = dests_.find(row.destination);
    if (dit == dests_.end() || !dispatching_.load()) {
        --in_flight_total_;
        if (dit != dests_.end()) --dit->second.in_flight;
        store::delivery_update u;
        u.delivery_id = row.id;
        u.fence = row.fence;
        u.state = delivery_state::pending;
        u.hand_back = true;
        u.reason =
            dit == dests_.end() ? "destination removed; handed back" : "handed back at shutdown";
        apply({u});
        return;
    }
    destination& d = dit->second;
    std::string did = std::to_string(row.id);
    if (prep.what != prepared::action::send) {
        --d.in_flight;
        --in_flight_total_;
        store::delivery_update u;
        u.delivery_id = row.id;
        u.fence = row.fence;
        u.reason = prep.reason;
        u.actor = "gate";
        u.hand_back = true;  // decided before any sink saw it: not an attempt
        switch (prep.what) {
            case prepared::action::hold:
                u.state = delivery_state::held;
                break;
            case prepared::action::block:
                u.state = delivery_state::blocked;
                break;
            case prepared::action::dead:
                u.state = delivery_state::dead;
                u.actor = "engine";
                break;
            default:
                u.state = delivery_state::failed;
                u.actor = "engine";
                u.next_attempt_ms = core::now_ms() + backoff_ms(d.pol, row.attempts, rng_);
        }
        log_.info("deliver.prepare", prep.reason,
                  {{"delivery", did},
                   {"event", row.event_id},
                   {"endpoint", d.name},
                   {"state", store::to_string(u.state)}});
        if (obs_.state) obs_.state(d.name, u.state);
        apply({u});
        kick();
        return;
    }

    attempt a;
    a.row = row;
    a.destination = d.name;
    a.started_ms = core::now_ms();
    a.received_ms = received_ms;
    auto ref = std::make_shared<plugin::delivery_ref>();
    ref->token = token;
    ref->delivery_id = did;
    ref->event_id = row.event_id;
    ref->destination = d.name;
    ref->attempt = static_cast<std::uint32_t>(row.attempts);  // counted by the claim
    ref->deadline_unix_ms = a.started_ms + d.pol.attempt_timeout_ms;
    ref->event = std::move(prep.event);
    for (auto& att : ref->event.attachments) {
        att.handle = handles_.add(att.sha256_hex);
        a.handles.push_back(att.handle);
    }
    a.ref = ref;
    a.holds = std::move(prep.holds);
    a.timer = std::make_unique<asio::steady_timer>(io_);
    a.timer->expires_after(std::chrono::milliseconds(d.pol.attempt_timeout_ms));
    a.timer->async_wait([this, token, ms = d.pol.attempt_timeout_ms](boost::system::error_code ec) {
        if (ec) return;
        finish(token, {SAMBAND_RETRY, {}, "attempt timed out after " + std::to_string(ms) + " ms"});
    });
    by_delivery_[row.id] = token;
    attempts_.emplace(token, std::move(a));
    if (obs_.state) obs_.state(d.name, delivery_state::in_flight);
    log_.debug("deliver.send", "handing delivery to sink",
               {{"delivery", did},
                {"event", row.event_id},
                {"endpoint", d.name},
                {"attempt", std::to_string(ref->attempt)}});
    sends->emplace_back(d.sink, std::move(ref));
}

// Queued for the engine thread, which takes every completion queued by then in one turn (one
// post and one wake-up while it has not run yet, however many arrive meanwhile).
void engine::on_complete(const std::string& endpoint, std::uint64_t token, plugin::completion c) {
    bool first;
    {
        std::lock_guard lock(completions_mu_);
        first = completions_.empty();
        completions_.push_back({endpoint, token, std::move(c)});
    }
    if (first) asio::post(io_, [this] { take_completions(); });
}

void engine::take_completions() {
    std::vector<arrived_completion> got;
    {
        std::lock_guard lock(completions_mu_);
        got.swap(completions_);
    }
    for (auto& a : got) {
        if (attempts_.count(a.token))
            finish(a.token, std::move(a.c));
        else
            late(a.endpoint, a.token, std::move(a.c));
    }
}

void engine::remember_ended(std::uint64_t token, const attempt& a, bool ok, std::string how) {
    ended_[token] = {a.row.id, a.row.event_id, a.destination, a.row.attempts,
                     ok,       std::move(how), a.row.fence};
    ended_order_.push_back(token);
    while (ended_order_.size() > kEndedKept) {
        ended_.erase(ended_order_.front());
        ended_order_.pop_front();
    }
}

// A completion for an attempt that had already ended (timed out, failed, or completed once):
// evidence, never dropped. A late OK makes the delivery "delivered (late)", whatever it shows now.
void engine::late(const std::string& endpoint, std::uint64_t token, plugin::completion c) {
    bool ok = c.status == SAMBAND_OK;
    auto it = ended_.find(token);
    if (it == ended_.end()) {
        log_.warn("deliver.late", "completion for an unknown attempt (too old or never started)",
                  {{"endpoint", endpoint},
                   {"token", std::to_string(token)},
                   {"status", ok ? "ok" : "failed"},
                   {"message", c.message}});
        if (obs_.late) obs_.late(endpoint, "unknown");
        return;
    }
    ended_attempt& e = it->second;
    std::string did = std::to_string(e.delivery_id);
    const char* kind = e.ok ? "double" : "late";
    std::string what = "attempt " + std::to_string(e.attempt) + " completed " +
                       (ok ? std::string("OK") : "with failure: " + c.message) +
                       " after it had ended (" + e.how + ")";
    if (!c.external_id.empty()) what += " external_id=" + c.external_id;
    log_.warn(
        "deliver.late", what,
        {{"delivery", did}, {"event", e.event_id}, {"endpoint", e.destination}, {"kind", kind}});
    store_.audit("engine", e.ok ? "delivery.double_completion" : "delivery.late_completion",
                 "delivery:" + did, what);
    if (obs_.late) obs_.late(e.destination, kind);
    if (!ok || e.ok) return;
    e.ok = true;
    e.how = "delivered late";
    auto cur = by_delivery_.find(e.delivery_id);
    if (cur != by_delivery_.end()) {
        // A retry is in flight: its outcome may not hide that the receiver already has it.
        auto at = attempts_.find(cur->second);
        if (at != attempts_.end()) {
            at->second.delivered_late = "delivered late by attempt " + std::to_string(e.attempt);
            at->second.late_external_id = c.external_id;
            return;
        }
    }
    store::delivery_update u;
    u.delivery_id = e.delivery_id;
    u.fence = e.fence;
    u.state = delivery_state::delivered;
    u.external_id = c.external_id;
    u.reason = "delivered late: " + what;
    if (obs_.state) obs_.state(e.destination, u.state);
    apply({u});
}

void engine::finish(std::uint64_t token, plugin::completion c) {
    auto it = attempts_.find(token);
    if (it == attempts_.end()) return;
    attempt a = std::move(it->second);
    attempts_.erase(it);
    by_delivery_.erase(a.row.id);
    a.timer->cancel();
    for (auto h : a.handles) handles_.remove(h);
    --in_flight_total_;
    auto dit = dests_.find(a.destination);
    policy pol;
    if (dit != dests_.end()) {
        --dit->second.in_flight;
        pol = dit->second.pol;
    }
    std::int64_t now = core::now_ms();
    std::string did = std::to_string(a.row.id);
    store::delivery_update u;
    u.delivery_id = a.row.id;
    u.fence = a.row.fence;            // refused if another node took the delivery over
    int attempt_no = a.row.attempts;  // counted at the claim
    int used = attempt_no - a.row.attempts_base;
    u.closes_attempt = attempt_no;
    samband_status st = c.status;
    if (st < SAMBAND_OK || st > SAMBAND_INTERNAL) st = SAMBAND_INTERNAL;
    remember_ended(token, a, st == SAMBAND_OK,
                   st == SAMBAND_OK ? "delivered" : "ended: " + c.message);

    if (!a.delivered_late.empty() && st != SAMBAND_OK) {
        // An earlier attempt of this delivery answered OK meanwhile: it is delivered.
        u.state = delivery_state::delivered;
        u.external_id = a.late_external_id;
        u.reason =
            a.delivered_late + "; attempt " + std::to_string(attempt_no) + " failed: " + c.message;
    } else if (!dispatching_.load() && st != SAMBAND_OK) {
        // Stopping: hand it back for the next start, without counting a failure.
        u.state = delivery_state::pending;
        u.closes_attempt = 0;
        u.hand_back = true;
        u.reason = "handed back at shutdown: " + c.message;
    } else if (st == SAMBAND_OK) {
        u.state = delivery_state::delivered;
        u.external_id = c.external_id;
        u.reason.clear();
        if (!a.delivered_late.empty()) {
            // Both attempts reached the receiver: keep it as evidence.
            u.reason = "delivered twice: " + a.delivered_late + " and by attempt " +
                       std::to_string(attempt_no);
            store_.audit("engine", "delivery.double_completion", "delivery:" + did, u.reason);
            log_.warn("deliver.late", u.reason,
                      {{"delivery", did}, {"endpoint", a.destination}, {"kind", "double"}});
            if (obs_.late) obs_.late(a.destination, "double");
        }
        if (obs_.latency && a.received_ms > 0)
            obs_.latency(a.destination, static_cast<double>(now - a.received_ms) / 1000.0);
        log_.info("deliver.done", "delivered",
                  {{"delivery", did},
                   {"event", a.row.event_id},
                   {"endpoint", a.destination},
                   {"attempt", std::to_string(attempt_no)},
                   {"external_id", c.external_id}});
    } else if (st == SAMBAND_RETRY || st == SAMBAND_INTERNAL) {
        if (used >= pol.max_attempts) {
            u.state = delivery_state::dead;
            u.reason = "gave up after " + std::to_string(used) + " attempts: " + c.message;
        } else {
            u.state = delivery_state::failed;
            u.reason = c.message;
            u.next_attempt_ms = now + backoff_ms(pol, attempt_no, rng_);
            if (obs_.retry) obs_.retry(a.destination);
        }
        log_.warn("deliver.failed", u.reason,
                  {{"delivery", did},
                   {"event", a.row.event_id},
                   {"endpoint", a.destination},
                   {"attempt", std::to_string(attempt_no)},
                   {"state", store::to_string(u.state)}});
    } else {
        u.state = delivery_state::dead;
        u.reason = "permanent failure: " + c.message;
        log_.warn("deliver.dead", u.reason,
                  {{"delivery", did},
                   {"event", a.row.event_id},
                   {"endpoint", a.destination},
                   {"attempt", std::to_string(attempt_no)}});
    }
    if (obs_.state) obs_.state(a.destination, u.state);
    apply({u});
    // Claim the next ones in one batch for all completions that arrive together (a claim is a
    // store round trip; one per completion would cap throughput at the commit rate).
    kick();
}

// State changes decided in one turn of the engine thread (the completions that arrived together)
// go to the store as one job: one savepoint and one callback for the lot, not one per delivery.
void engine::apply(std::vector<store::delivery_update> ups) {
    bool first = unapplied_.empty();
    for (auto& u : ups) unapplied_.push_back(std::move(u));
    if (!first || unapplied_.empty()) return;
    asio::post(io_, [this] { apply_now(); });
}

void engine::apply_now() {
    if (unapplied_.empty()) return;
    std::vector<store::delivery_update> ups;
    ups.swap(unapplied_);
    store_.update(std::move(ups), [this](boost::system::error_code ec) {
        if (ec) {
            log_.error("deliver.store", "store update failed: " + ec.message());
            return;
        }
        kick();  // the next delivery of the same patient may be due now
    });
}

// The store reads and the wait for the writer run on the destination's workers; only the decided
// update comes back to the engine thread.
void engine::on_receipt(const std::string& endpoint, std::string external_id, std::int32_t kind,
                        std::string text) {
    asio::post(io_, [this, endpoint, external_id = std::move(external_id), kind,
                     text = std::move(text)]() mutable {
        auto dit = dests_.find(endpoint);
        if (dit == dests_.end() || !dit->second.worker) {
            log_.warn("receipt.unmatched", "receipt from an endpoint that is not a destination",
                      {{"endpoint", endpoint}, {"external_id", external_id}});
            return;
        }
        // The completion this receipt answers may still be queued in this engine turn: hand the
        // queued state changes to the store first, so the worker's wait for the writer sees it.
        apply_now();
        ++worker_jobs_;
        asio::post(dit->second.worker->pool, [this, endpoint, external_id = std::move(external_id),
                                              kind, text = std::move(text)] {
            correlate_receipt(endpoint, external_id, kind, text);
            worker_done();
        });
    });
}

void engine::correlate_receipt(const std::string& endpoint, const std::string& external_id,
                               std::int32_t kind, const std::string& text) {
    store_.record_receipt({endpoint, external_id, kind, text}, {});
    auto found = store_.find_by_external_id(endpoint, external_id);
    if (found && !*found) {
        // A receipt can overtake the commit of its own delivery: wait for the writer once.
        store_.flush();
        found = store_.find_by_external_id(endpoint, external_id);
    }
    if (!found || !*found) {
        log_.warn("receipt.unmatched", "receipt for an unknown external id",
                  {{"endpoint", endpoint}, {"external_id", external_id}});
        return;
    }
    store::delivery_update u;
    u.delivery_id = **found;
    u.actor = "receipt";
    if (kind == SAMBAND_RECEIPT_REJECT) {
        u.state = delivery_state::dead;
        u.reason = "rejected by the receiver: " + text;
    } else {
        u.state = delivery_state::acknowledged;
        u.reason = kind == SAMBAND_RECEIPT_WARNING ? "acknowledged with warnings: " + text : "";
    }
    auto cur = store_.get_delivery(u.delivery_id);
    if (cur && *cur && !store::transition_allowed((*cur)->state, u.state)) {
        std::string why = "receipt ignored: delivery is " +
                          std::string(store::to_string((*cur)->state)) + ", not delivered";
        log_.warn("receipt.ignored", why,
                  {{"delivery", std::to_string(u.delivery_id)},
                   {"endpoint", endpoint},
                   {"external_id", external_id}});
        store_.audit("receipt", "receipt.ignored", "delivery:" + std::to_string(u.delivery_id),
                     why + " (" + text + ")");
        return;
    }
    log_.info("receipt", std::string(store::to_string(u.state)),
              {{"delivery", std::to_string(u.delivery_id)},
               {"endpoint", endpoint},
               {"external_id", external_id}});
    asio::post(io_, [this, endpoint, u = std::move(u)] {
        if (obs_.state) obs_.state(endpoint, u.state);
        apply({u});
    });
}

void engine::stop_dispatch(std::chrono::milliseconds grace) {
    dispatching_.store(false);
    auto until = std::chrono::steady_clock::now() + grace;
    while ((in_flight_total_.load() > 0 || claims_out_.load() > 0) &&
           std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    // Whatever is still out goes back to pending (a repeat later, never a loss).
    run_sync([this] {
        std::vector<store::delivery_update> ups;
        for (auto& [token, a] : attempts_) {
            a.timer->cancel();
            for (auto h : a.handles) handles_.remove(h);
            store::delivery_update u;
            u.delivery_id = a.row.id;
            u.fence = a.row.fence;  // refused if another node took the delivery over
            u.fence = a.row.fence;
            u.state = delivery_state::pending;
            u.hand_back = true;
            u.reason = "handed back at shutdown";
            ups.push_back(u);
        }
        attempts_.clear();
        by_delivery_.clear();
        for (auto& [token, row] : preparing_) {
            store::delivery_update u;
            u.delivery_id = row.id;
            u.fence = row.fence;
            u.fence = row.fence;
            u.state = delivery_state::pending;
            u.hand_back = true;
            u.reason = "handed back at shutdown";
            ups.push_back(u);
        }
        preparing_.clear();
        in_flight_total_.store(0);
        apply_now();  // changes decided before, in order ahead of these
        if (!ups.empty()) store_.update(std::move(ups), {});
    });
}

}  // namespace samband::delivery
