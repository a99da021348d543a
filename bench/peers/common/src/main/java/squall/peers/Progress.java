package squall.peers;

import java.util.concurrent.atomic.AtomicLong;

/**
 * Progress counts the records a peer has processed and prints the line the
 * harness waits for, "squall-peer processed N", when the count reaches the
 * first tenth of the expected records (the harness starts timing and
 * sampling the process's CPU there) and when it reaches all of them.
 */
public final class Progress {
    private final AtomicLong done = new AtomicLong();
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
    }

    public long count() {
        return done.get();
    }
}
