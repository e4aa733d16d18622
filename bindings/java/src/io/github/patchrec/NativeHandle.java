package io.github.patchrec;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.PointerByReference;
import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.util.concurrent.locks.ReadWriteLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * A C object that a Java object owns. {@link #close()} frees it once the calls in flight
 * return, after which calls throw a {@link PatchrecException} with
 * {@link Status#NULL_ARGUMENT}, the status C gives a NULL handle. If the owner becomes
 * unreachable unclosed, a {@link Cleaner} frees the object.
 */
abstract class NativeHandle implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();

    /** A C function taking this handle and, last, an error out-param. */
    @FunctionalInterface
    interface HandleFunction {
        int apply(Pointer handle, PointerByReference error);
    }

    /** Read-held by every call and write-held by close(), so close() never frees under a call. */
    private final ReadWriteLock lock = new ReentrantReadWriteLock();
    private final Cleaner.Cleanable cleanable;
    private Pointer pointer;

    NativeHandle(Pointer pointer, Consumer<Pointer> free) {
        this.pointer = pointer;
        // The action must not capture `this`: the owner would then never become unreachable.
        this.cleanable = CLEANER.register(this, () -> free.accept(pointer));
    }

    /** Applies {@code use} to the open handle. */
    final <T> T withPointer(Function<Pointer, T> use) {
        lock.readLock().lock();
        try {
            if (pointer == null) {
                throw new PatchrecException(Status.NULL_ARGUMENT, getClass().getSimpleName() + " used after close()");
            }
            return use.apply(pointer);
        } finally {
            lock.readLock().unlock();
            // Keeps the cleaner from freeing the handle while C still uses it.
            Reference.reachabilityFence(this);
        }
    }

    final void run(Consumer<Pointer> use) {
        withPointer(handle -> {
            use.accept(handle);
            return null;
        });
    }

    /** Calls {@code function} on the open handle and throws its failure. */
    final void call(HandleFunction function) {
        run(handle -> LibPatchrec.check(error -> function.apply(handle, error)));
    }

    /** Frees the C object after the calls in flight return. Closing again does nothing. */
    @Override
    public void close() {
        lock.writeLock().lock();
        try {
            pointer = null;
            cleanable.clean();
        } finally {
            lock.writeLock().unlock();
        }
    }
}
