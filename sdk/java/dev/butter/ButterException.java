package dev.butter;

/**
 * An error reported to the caller with a Butter error type
 * (docs/events.md, "Error types"): {@code PreconditionFailed} when the
 * input is refused, {@code PostconditionFailed} when the function cannot
 * produce a valid output, or a type of the function's own.
 */
public class ButterException extends Exception {
    private static final long serialVersionUID = 1L;
    private final String type;

    public ButterException(String type, String message) {
        super(message);
        this.type = type == null || type.isEmpty() ? "Exception" : type;
    }

    /** The error type the call fails with. */
    public String type() {
        return type;
    }

    /** The input was refused (for example, it fails validation). */
    public static ButterException preconditionFailed(String message) {
        return new ButterException("PreconditionFailed", message);
    }

    /** The output was refused: the function could not produce a valid answer. */
    public static ButterException postconditionFailed(String message) {
        return new ButterException("PostconditionFailed", message);
    }
}
