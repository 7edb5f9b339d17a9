/// A module's typed error that knows its problem+json form.
public protocol ProblemConvertible: Error {
    var problem: Problem { get }
}
