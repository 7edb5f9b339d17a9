import Kernel

/// What can go wrong with a scan, as the client sees it (problem+json through `ProblemConvertible`).
public enum ScanError: ProblemConvertible, Equatable {
    case emptyImage
    case corruptImage(String)
    case unsupportedImage(String)
    case tooManyPixels(width: Int, height: Int, limit: Int)
    case invalid(field: String, detail: String)
    case wrongState(String)
    /// Too many photos are being scanned at once.
    case busy
    /// The photo was still being read when the time budget ran out (`SCAN_TIME_BUDGET`).
    case tooSlow(budget: Duration)

    public var problem: Problem {
        switch self {
        case .emptyImage:
            Problem(status: .unprocessableContent, slug: "empty-image", title: "Empty image", detail: "The request carries no image bytes.", field: "image")
        case .corruptImage(let detail):
            Problem(status: .unprocessableContent, slug: "corrupt-image", title: "Corrupt image", detail: detail, field: "image")
        case .unsupportedImage(let detail):
            Problem(status: .unprocessableContent, slug: "unsupported-image", title: "Unsupported image", detail: detail + " Send a JPEG or a PNG.", field: "image")
        case .tooManyPixels(let width, let height, let limit):
            Problem(
                status: .unprocessableContent, slug: "image-too-large", title: "Image too large",
                detail: "The image is \(width)×\(height) pixels; at most \(limit) pixels are read.", field: "image")
        case .invalid(let field, let detail): .validation(field, detail)
        case .wrongState(let detail): .conflict("invalid-state", detail, title: "Wrong session state")
        case .tooSlow(let budget):
            Problem(
                status: .unprocessableContent, slug: "image-too-slow", title: "Image too slow to read",
                detail: "Reading this photo took longer than \(budget.components.seconds) s (SCAN_TIME_BUDGET); send a plain photo (not a progressive JPEG of many scans).",
                field: "image")
        case .busy:
            {
                var problem = Problem(
                    status: .serviceUnavailable, slug: "scanner-busy", title: "Scanner busy", detail: "Too many photos are being scanned right now; try again in a second.")
                problem.headers[.retryAfter] = "1"
                return problem
            }()
        }
    }
}
