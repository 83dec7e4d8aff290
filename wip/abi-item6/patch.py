import re
def sub(p, a, b):
    s=open(p).read()
    assert a in s, (p, a[:60])
    s=s.replace(a,b,1)
    open(p,'w').write(s)

# nhn
p='plugins/nhn/plugin.cpp'
sub(p,'''    void stop() {
        {
            std::lock_guard lock(mu_);
            if (!running_) return;''','''    void stop() {
        worker_.stop();  // first: no job queues a send after this
        {
            std::lock_guard lock(mu_);
            if (!running_) return;''')
sub(p,'''    void deliver(samband::sdk::delivery d) {
        auto msg = serialize(d.id(), d.event());''','''    // Returns at once: serialising (attachments, schema validation) and the file or HTTP send run
    // on the worker thread.
    void deliver(samband::sdk::delivery d) {
        worker_.post(std::move(d), [this](samband::sdk::delivery& d) { send(d); });
    }

    void send(samband::sdk::delivery& d) {
        auto msg = serialize(d.id(), d.event());''')
s=open(p).read()
# add worker as last member of the class: before the final "};" of class nhn_plugin
i=s.index('    std::thread sender_;')
j=s.index('\n};', i)
s=s[:j]+'\n    samband::sdk::worker worker_;  // last: stopped first'+s[j:]
open(p,'w').write(s)

# file plugin
p='plugins/file/file_plugin.cpp'
sub(p,'''    void stop() {
        {
            std::lock_guard lock(mu_);
            if (!running_) return;''','''    void stop() {
        if (sink_worker_) sink_worker_->stop();  // writes in progress finish, queued ones RETRY
        {
            std::lock_guard lock(mu_);
            if (!running_) return;''')
sub(p,'''    void deliver(samband::sdk::delivery d) {
        if (outbox_.empty()) {
            d.fail("this file endpoint has no outbox (it is a source only)");
            return;
        }''','''    // Returns at once: the outbox writes (attachments streamed, fsync, rename) run on the sink
    // worker thread.
    void deliver(samband::sdk::delivery d) {
        if (!sink_worker_) {
            d.fail("this file endpoint has no outbox (it is a source only)");
            return;
        }
        sink_worker_->post(std::move(d), [this](samband::sdk::delivery& d) { write_delivery(d); });
    }

    void write_delivery(samband::sdk::delivery& d) {''')
sub(p,'''        if (!inbox_.empty()) {
            fs::create_directories(fs::path(inbox_) / "done", ec);
            fs::create_directories(fs::path(inbox_) / "error", ec);
        }
    }''','''        if (!inbox_.empty()) {
            fs::create_directories(fs::path(inbox_) / "done", ec);
            fs::create_directories(fs::path(inbox_) / "error", ec);
        }
        if (!outbox_.empty()) sink_worker_ = std::make_unique<samband::sdk::worker>();
    }''')
sub(p,'''    std::thread watcher_;
};''','''    std::thread watcher_;
    std::unique_ptr<samband::sdk::worker> sink_worker_;  // only with an outbox; stopped first
};''')

# example vendor
p='plugins/example-vendor/example_sink.cpp'
sub(p,'''//   * deliver(): complete every delivery exactly once (succeed/retry/fail), here at once;''','''//   * deliver(): return at once, handing the delivery to an sdk::worker that does the I/O on its
//     own thread; complete every delivery exactly once (succeed/retry/fail);''')
sub(p,'''    // The host hands over one delivery at a time per instance. Do real I/O on your own thread
    // and keep the delivery object until it is done; this example finishes at once.
    void deliver(samband::sdk::delivery d) {''','''    // The host hands over one delivery at a time and expects deliver() back at once: the worker
    // runs write() on its thread (queued ones are retried when the endpoint stops).
    void deliver(samband::sdk::delivery d) {
        worker_.post(std::move(d), [this](samband::sdk::delivery& d) { write(d); });
    }

    void write(samband::sdk::delivery& d) {''')
sub(p,'''    samband::sdk::host host_;
    std::string folder_;
};''','''    samband::sdk::host host_;
    std::string folder_;
    samband::sdk::worker worker_;  // last: stopped (and joined) before the rest goes
};''')
