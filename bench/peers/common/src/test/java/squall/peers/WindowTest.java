package squall.peers;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;

/** Window's semantics are Squall's window/window.go: see the class comment. */
class WindowTest {
    static final long S = Window.RESOLUTION_MS, R = Window.BUCKETS;

    /** stats returns {count, sum, min, max} of bucket b, or null when the window does not hold it. */
    static double[] stats(Window w, long b) {
        for (int i = w.head; i < w.head + w.size; i++) {
            if (w.bucket[i] == b) {
                return new double[] {w.count[i], w.sum[i], w.min[i], w.max[i]};
            }
        }
        return null;
    }

    static void assertBucket(Window w, long b, double count, double sum, double min, double max) {
        assertEquals(java.util.Arrays.toString(new double[] {count, sum, min, max}),
                java.util.Arrays.toString(stats(w, b)), "bucket " + b);
    }

    @Test
    void aggregatesOverSeveralBuckets() {
        Window w = new Window();
        assertEquals(Window.APPLIED, w.add(10 * S + 1, 5, null));
        assertEquals(Window.APPLIED, w.add(10 * S + 999, -2, ""));
        assertEquals(Window.APPLIED, w.add(10 * S + 500, 7, null));
        assertEquals(Window.APPLIED, w.add(12 * S, 1.5, null));
        assertEquals(Window.APPLIED, w.add(11 * S + 3, 4, null)); // out of order: inserted between
        assertBucket(w, 10, 3, 10, -2, 7);
        assertBucket(w, 11, 1, 4, 4, 4);
        assertBucket(w, 12, 1, 1.5, 1.5, 1.5);
        assertEquals(3, w.size);
        assertEquals(5, w.total());
        assertEquals(15.5, w.sum());
        assertEquals(-2, w.min());
        assertEquals(7, w.max());
        assertEquals(12, w.newest);
        // last: the event with the greatest time, not the last received
        assertEquals(12 * S, w.lastTs);
        assertEquals(1.5, w.lastValue);
        assertEquals(Window.APPLIED, w.add(12 * S, 9, null)); // a tie: the latest applied wins
        assertEquals(9, w.lastValue);
    }

    @Test
    void bucketsAreFloorOfTime() {
        Window w = new Window();
        w.add(-1, 1, null); // floor(-1/1000) = -1
        w.add(0, 2, null);
        w.add(999, 3, null);
        assertBucket(w, -1, 1, 1, 1, 1);
        assertBucket(w, 0, 2, 5, 2, 3);
    }

    @Test
    void oldBucketsAreEvictedAndOlderEventsLate() {
        Window w = new Window();
        w.add(0, 1, null); // bucket 0
        w.add(1 * S, 2, null); // bucket 1
        w.add(300 * S, 3, null);
        assertEquals(3, w.total());
        // newest 600: the window holds b > 0, so bucket 0 leaves and 1 stays
        assertEquals(Window.APPLIED, w.add(600 * S, 4, null));
        assertEquals(null, stats(w, 0));
        assertBucket(w, 1, 1, 2, 2, 2);
        assertEquals(3, w.total());
        assertEquals(9, w.sum());
        assertEquals(Window.LATE, w.add(0, 100, null)); // b = 0 ≤ 600 − 600
        assertEquals(Window.LATE, w.add(-5 * S, 100, null));
        assertEquals(Window.APPLIED, w.add(1 * S + 999, 5, null)); // b = 1 > 0
        assertBucket(w, 1, 2, 7, 2, 5);
        // a jump past the whole window evicts every bucket
        assertEquals(Window.APPLIED, w.add(5000 * S, 6, null));
        assertEquals(1, w.size);
        assertEquals(1, w.total());
        assertEquals(Window.LATE, w.add(4400 * S, 1, null));
        assertEquals(Window.APPLIED, w.add(4401 * S, 1, null));
    }

    @Test
    void duplicateIdsInTheWindowAreDropped() {
        Window w = new Window();
        assertEquals(Window.APPLIED, w.add(5 * S, 1, "a"));
        assertEquals(Window.APPLIED, w.add(5 * S, 2, "b"));
        assertEquals(Window.DUPLICATE, w.add(5 * S, 3, "a"));
        assertEquals(Window.DUPLICATE, w.add(100 * S, 3, "b")); // b's bucket 5 stays inside
        assertEquals(Window.DUPLICATE, w.add(4 * S, 3, "a")); // an older bucket, same id
        assertEquals(Window.APPLIED, w.add(5 * S, 4, null)); // no id: never a duplicate
        assertEquals(Window.APPLIED, w.add(5 * S, 4, ""));
        assertBucket(w, 5, 4, 11, 1, 4);
        assertEquals(Window.DUPLICATE, w.add(604 * S, 9, "a")); // 5 > 604 − 600: still inside
        assertEquals(null, stats(w, 604)); // a duplicate changes nothing
        assertEquals(5, w.newest); // nor does it advance the window
    }

    @Test
    void anIdWhoseBucketLeftTheWindowIsAcceptedAgain() {
        Window w = new Window();
        w.add(5 * S, 1, "a");
        // This event evicts bucket 5 (5 ≤ 605 − 600): "a" is accepted again.
        assertEquals(Window.APPLIED, w.add(605 * S, 2, "a"));
        assertEquals(null, stats(w, 5));
        // ... and is now remembered with bucket 605.
        assertEquals(Window.DUPLICATE, w.add(605 * S, 3, "a"));
        assertEquals(Window.DUPLICATE, w.add(1204 * S, 3, "a"));
        assertEquals(Window.APPLIED, w.add(1205 * S, 3, "a"));
    }

    @Test
    void lateIsDecidedBeforeDuplicate() {
        Window w = new Window();
        w.add(10 * S, 1, "a");
        w.add(700 * S, 2, "x"); // cut 100: bucket 10 evicted
        assertEquals(Window.LATE, w.add(50 * S, 3, "a"));
        assertEquals(Window.LATE, w.add(100 * S, 3, "x")); // late, though x is live
        assertEquals(Window.DUPLICATE, w.add(101 * S, 3, "x"));
    }

    @Test
    void manyIdsGrowTheTableAndExpire() {
        Window w = new Window();
        int n = 5000;
        for (int i = 0; i < n; i++) {
            assertEquals(Window.APPLIED, w.add(i / 10 * S, i, "id-" + i), "first " + i);
        }
        for (int i = 0; i < n; i++) {
            assertEquals(Window.DUPLICATE, w.add(i / 10 * S, i, "id-" + i), "again " + i);
        }
        assertEquals(n, w.total());
        // Past the window: every old id has expired, the events are new.
        for (int i = 0; i < n; i++) {
            assertEquals(Window.APPLIED, w.add((2000 + i / 10) * S, 1, "id-" + i), "later " + i);
        }
        assertEquals(n, w.total());
        assertEquals(n, w.sum());
    }

    @Test
    void writeAndReadKeepTheState() {
        Window w = new Window();
        for (int i = 0; i < 50; i++) {
            w.add(i * 37 * S / 10, i, "id-" + i);
        }
        byte[] b = w.write();
        assertEquals(w.encodedSize(), b.length);
        Window r = Window.read(b);
        assertEquals(w.newest, r.newest);
        assertEquals(w.lastTs, r.lastTs);
        assertEquals(w.lastValue, r.lastValue);
        assertEquals(w.size, r.size);
        for (int i = 0; i < w.size; i++) {
            long bk = w.bucket[w.head + i];
            assertEquals(java.util.Arrays.toString(stats(w, bk)), java.util.Arrays.toString(stats(r, bk)));
        }
        assertEquals(Window.DUPLICATE, r.add(49 * 37 * S / 10, 1, "id-49"));
        assertEquals(Window.APPLIED, r.add(49 * 37 * S / 10, 1, "id-50"));
        assertEquals(w.total() + 1, r.total());
        assertEquals(r.total(), Window.read(r.write()).total());
    }

    /**
     * A deterministic random stream against a plain model of the same
     * rules (maps, no eviction structure): out-of-order times, repeated ids
     * and jumps that make events late and evict buckets.
     */
    @Test
    void matchesAPlainModel() {
        Random rnd = new Random(42);
        Window w = new Window();
        TreeMap<Long, double[]> buckets = new TreeMap<>(); // {count, sum, min, max}
        Map<String, Long> ids = new HashMap<>();
        long newest = Long.MIN_VALUE, t = 0;
        int[] outcomes = new int[3];
        for (int i = 0; i < 20_000; i++) {
            t += rnd.nextInt(i % 1000 == 999 ? 400_000 : 2_000); // now and then a jump
            long ts = t - rnd.nextInt(700_000); // up to ~12 minutes out of order
            double v = rnd.nextInt(10_000) / 100.0;
            String id = rnd.nextInt(10) == 0 ? null : "id-" + rnd.nextInt(3000);
            long b = Math.floorDiv(ts, S);
            int want;
            if (newest != Long.MIN_VALUE && b <= newest - R) {
                want = Window.LATE;
            } else if (id != null && ids.containsKey(id) && ids.get(id) > Math.max(b, newest) - R) {
                want = Window.DUPLICATE;
            } else {
                want = Window.APPLIED;
                newest = Math.max(newest, b);
                buckets.headMap(newest - R, true).clear();
                double[] s = buckets.computeIfAbsent(b, k -> new double[] {0, 0, v, v});
                s[0]++;
                s[1] += v;
                s[2] = Math.min(s[2], v);
                s[3] = Math.max(s[3], v);
                if (id != null) {
                    ids.put(id, b);
                }
            }
            assertEquals(want, w.add(ts, v, id), "event " + i);
            outcomes[want]++;
        }
        assertEquals(buckets.size(), w.size);
        for (Map.Entry<Long, double[]> e : buckets.entrySet()) {
            double[] s = e.getValue();
            assertBucket(w, e.getKey(), s[0], s[1], s[2], s[3]);
        }
        // the stream must exercise every outcome
        for (int o = 0; o < 3; o++) {
            assertEquals(true, outcomes[o] > 100, "outcome " + o + ": " + outcomes[o]);
        }
    }

    @Test
    void eventParsesTheHarnessRecords() throws Exception {
        Event e = Event.parse("{\"key\":\"dc1.rack01.srv-0000001.cpu\",\"ts\":1700000000123,\"value\":42.50,\"id\":\"e-7\",\"tags\":{\"a\":\"b\"}}"
                .getBytes(StandardCharsets.UTF_8));
        assertEquals("dc1.rack01.srv-0000001.cpu", e.key);
        assertEquals(1700000000123L, e.ts);
        assertEquals(42.5, e.value);
        assertEquals("e-7", e.id);
        Event noID = Event.parse("{\"key\":\"k\",\"ts\":1,\"value\":-1}".getBytes(StandardCharsets.UTF_8));
        assertEquals(null, noID.id);
        assertThrows(java.io.IOException.class, () -> Event.parse("{\"key\":".getBytes(StandardCharsets.UTF_8)));
    }

    @Test
    void digestCountsAndPrints() {
        Digest a = new Digest(), b = new Digest();
        a.outcome(Window.APPLIED);
        a.outcome(Window.APPLIED);
        a.outcome(Window.LATE);
        b.outcome(Window.DUPLICATE);
        b.skipped++;
        Window w = new Window();
        w.add(0, 1.25, null);
        w.add(S, 2.5, null);
        b.addWindow(w);
        a.merge(b);
        assertEquals("squall-peer digest keys=1 applied=2 late=1 duplicates=1 skipped=1 window-count=2 window-cents=375"
                + " min-cents=125 max-cents=250 last-cents=250 window-sum=3.75",
                a.line());
        assertThrows(IllegalArgumentException.class, () -> a.outcome(7));
    }
}
