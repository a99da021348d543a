package squall.peers;

import java.io.Serializable;

/**
 * Digest is what a peer did with the harness's records and what its state
 * holds at the end, printed once as the line the harness checks against
 * what it produced ("squall-peer digest keys=… applied=… …"): the keys with
 * a window, the records applied, late, duplicate and skipped (undecodable
 * or without a key), and the count and sum of every key's window; the sum
 * also as a checksum that is exact for the harness's values, which have
 * two decimals: every key's window sum in hundredths, rounded, added up;
 * and likewise every key's window minimum, maximum and last value.
 *
 * A peer keeps one per processor or subtask (the counters are plain fields,
 * not safe for concurrent use), merges them once at the end and adds every
 * key's window with {@link #addWindow}.
 */
public final class Digest implements Serializable {
    private static final long serialVersionUID = 1L;

    /** The line's prefix, as the harness's peerDigestPrefix (bench/peercheck.go). */
    public static final String PREFIX = "squall-peer digest ";

    public long keys, applied, late, duplicates, skipped, windowCount, windowCents, minCents, maxCents, lastCents;
    public double windowSum;

    /** outcome counts one record by what {@link Window#add} returned. */
    public void outcome(int o) {
        switch (o) {
            case Window.APPLIED -> applied++;
            case Window.LATE -> late++;
            case Window.DUPLICATE -> duplicates++;
            default -> throw new IllegalArgumentException("outcome " + o);
        }
    }

    /** addWindow counts one key and its window's events and values. */
    public void addWindow(Window w) {
        keys++;
        windowCount += w.total();
        double s = w.sum();
        windowSum += s;
        windowCents += cents(s);
        if (w.size > 0) {
            minCents += cents(w.min());
            maxCents += cents(w.max());
            lastCents += cents(w.lastValue);
        }
    }

    private static long cents(double v) {
        return Math.round(v * 100);
    }

    /** merge adds o's figures to this digest's. */
    public void merge(Digest o) {
        keys += o.keys;
        applied += o.applied;
        late += o.late;
        duplicates += o.duplicates;
        skipped += o.skipped;
        windowCount += o.windowCount;
        windowCents += o.windowCents;
        minCents += o.minCents;
        maxCents += o.maxCents;
        lastCents += o.lastCents;
        windowSum += o.windowSum;
    }

    /** line is the digest as the harness reads it; the sum is exact (Double.toString round-trips). */
    public String line() {
        return PREFIX + "keys=" + keys + " applied=" + applied + " late=" + late + " duplicates=" + duplicates
                + " skipped=" + skipped + " window-count=" + windowCount + " window-cents=" + windowCents
                + " min-cents=" + minCents + " max-cents=" + maxCents + " last-cents=" + lastCents
                + " window-sum=" + windowSum;
    }
}
