package squall.peers;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Progress counts the records a peer has processed and prints the line the
 * harness waits for, "squall-peer processed N", when the count reaches the
 * first tenth of the expected records (the harness starts timing and
 * sampling the process's CPU there) and when it reaches all of them.
 */
public final class Progress {
    private final AtomicLong done = new AtomicLong();
    private final CountDownLatch all = new CountDownLatch(1);
    private final long mark, expected;

    public Progress(long expected) {
        this.expected = expected;
        this.mark = Math.max(1, expected / 10);
    }

    /** record counts one processed record; safe for concurrent use. */
    public void record() {
        long n = done.incrementAndGet();
        if (n == mark || n == expected) {
            System.out.println("squall-peer processed " + n);
            System.out.flush();
        }
        if (n == expected) {
            all.countDown();
        }
    }

    /**
     * await returns once every expected record has been recorded. What the
     * recording threads wrote before each record() is visible to its caller
     * (the count is an atomic).
     */
    public void await() throws InterruptedException {
        all.await();
    }

    public long count() {
        return done.get();
    }
}
